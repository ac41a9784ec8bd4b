"""The vendored Disco archives, checked on the host before Packer runs.

vendor/disco.lock names every upstream archive by its commit (git records it in the
tar's pax header) and the sha256 of its UNCOMPRESSED tar stream, which does not depend
on the gzip that made it (git < 2.38 pipes through `gzip -cn`, newer git compresses
itself, with other bytes: the tar inside is the same). The archives
themselves (vendor/disco/<name>-<ref>.tar.gz) are made locally by
`vendor/refresh.sh make` and never committed. A bake that builds Disco from them
(disco_source=vendored, or an absolute path to another disco.lock) needs the Disco
archive at disco_ref and every dependency archive present and matching; otherwise
it stops here with one line naming the file, before Packer or Docker is touched.
`provision/30-disco.sh` checks the same again inside the image.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImagebakeError
from .records import ROOT

LOCK = ROOT / "vendor" / "disco.lock"
ARCHIVES = ROOT / "vendor" / "disco"
REMAKE = "remake it with `vendor/refresh.sh make` (needs GitHub or a git mirror)"
HOW_TO_GET = ("make it with `vendor/refresh.sh make` (needs GitHub), or bake without Disco: "
              "--var disco_source=none")


class MissingArchive(ImagebakeError):
    """An archive the bake needs is not there (as opposed to one that does not match)."""

    def __init__(self, message: str, archive: str) -> None:
        super().__init__(message)
        self.archive = archive


@dataclass(frozen=True)
class Pin:
    name: str
    ref: str
    bases: str
    commit: str
    sha256: str

    @property
    def archive(self) -> str:
        return f"{self.name}-{self.ref}.tar.gz"


def read_lock(lock: Path = LOCK) -> list[Pin]:
    """The lock's rows (comments and blank lines dropped)."""
    pins = []
    for number, line in enumerate(Path(lock).read_text().splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) < 5:
            raise ImagebakeError(f"{_rel(lock)} line {number}: expected name ref bases commit "
                                 "sha256 licence repository")
        pins.append(Pin(*words[:5]))
    return pins


def selected(pins: list[Pin], disco_ref: str) -> list[Pin]:
    """Disco at DISCO_REF and every dependency any base may take (which OTP the base
    has is only known inside the image, so both dependency sets must be there)."""
    disco = [p for p in pins if p.bases == "disco" and p.ref == disco_ref]
    if not disco:
        refs = ", ".join(p.ref for p in pins if p.bases == "disco")
        raise ImagebakeError(f"vendor/disco.lock has no Disco at disco_ref {disco_ref!r} "
                             f"(vendored: {refs})")
    return disco + [p for p in pins if p.bases != "disco"]


def uses_vendor(variables: Mapping[str, str]) -> Path | None:
    """The lock a bake with VARIABLES builds from, or None (none, git URL, tarball)."""
    source = variables.get("disco_source", "vendored")
    if source == "vendored":
        return LOCK
    if source.startswith("/") and source.endswith("/disco.lock"):
        return Path(source)
    return None


def check(variables: Mapping[str, str], archives: Path = ARCHIVES) -> list[Pin]:
    """Every archive the bake needs, present with the lock's sha256; else one line."""
    lock = uses_vendor(variables)
    if lock is None:
        return []
    if not lock.is_file():
        raise ImagebakeError(f"missing lock file {_rel(lock)}")
    pins = selected(read_lock(lock), variables.get("disco_ref", "0.5.4"))
    for pin in pins:
        path = Path(archives) / pin.archive
        if not path.is_file():
            raise MissingArchive(f"missing archive {_rel(path)}: {HOW_TO_GET}", _rel(path))
        commit, got = tar_facts(path)
        if commit != pin.commit:
            raise ImagebakeError(f"commit mismatch {_rel(path)}: {commit or 'no commit'}, "
                                 f"{_rel(lock)} says {pin.commit[:12]}: {REMAKE}")
        if got != pin.sha256:
            raise ImagebakeError(f"checksum mismatch {_rel(path)}: tar sha256 {got[:16]}…, "
                                 f"{_rel(lock)} says {pin.sha256[:16]}…: {REMAKE}")
    return pins


def tar_facts(path: Path) -> tuple[str, str]:
    """(commit recorded by git archive, sha256 of the uncompressed tar stream) of a
    .tar.gz; ('', '') when it is not a gzip'd tar."""
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        with tarfile.open(path, "r:gz") as tar:
            commit = str(tar.pax_headers.get("comment", ""))
    except (OSError, EOFError, tarfile.TarError, zlib.error):
        return "", ""
    return commit, digest.hexdigest()


OFFLINE = "offline"  # disco_source of a bake that went on without Disco (no archives, no GitHub)
UPSTREAM_PROBE_SECONDS = 15


def upstream_reachable(lock: Path = LOCK) -> bool:
    """Whether git reaches the lock's Disco repository (through the user's own git
    configuration, so an `insteadOf` mirror counts), within UPSTREAM_PROBE_SECONDS."""
    import os
    import subprocess

    urls = [line.split()[6] for line in Path(lock).read_text().splitlines()
            if len(line.split()) >= 7 and line.split()[2] == "disco"]
    if not urls:
        return False
    try:
        return subprocess.run(["git", "ls-remote", "--exit-code", "-q", urls[0], "HEAD"],
                              capture_output=True, timeout=UPSTREAM_PROBE_SECONDS,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def resolve(effective: dict[str, str], given: Mapping[str, str], may_go_without: bool,
            reachable: Callable[[], bool] = upstream_reachable) -> str:
    """The disco_source the bake really uses, after checking the archives (check()).

    Archives missing, disco_source not GIVEN by the user (the default), a target that
    MAY_GO_WITHOUT Disco (the local ones) and upstream not REACHABLE: the bake goes on
    without Disco (disco_source=offline) after one warning line on stderr saying how to get
    it. Everything else is as strict as check(): a missing archive where GitHub answers, an
    explicit `disco_source=vendored`, an AWS bake, a checksum mismatch."""
    import sys

    try:
        check(effective)
    except MissingArchive as exc:
        if "disco_source" in given or not may_go_without or reachable():
            raise
        print(f"warning: baking WITHOUT Disco (offline): {exc.archive} is missing and GitHub "
              "cannot be reached; to get Disco run `scripts/install.sh` or "
              "`vendor/refresh.sh make` where GitHub is reachable, or point git at a mirror "
              "with url.<base>.insteadOf (docs/bake.md), then bake again",
              file=sys.stderr, flush=True)
        effective["disco_source"] = OFFLINE
    return effective["disco_source"]


def _rel(path: Path) -> str:
    try:
        return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def local_bake_vars() -> list[str]:
    """`--var` flags for the test bake: none when the archives are here (real Disco),
    else `disco_source=none` with a note on stderr saying why."""
    import sys

    try:
        check({"disco_source": "vendored"})
        return []
    except ImagebakeError as exc:
        print(f"note: baking without Disco ({exc}); the Disco tests will skip",
              file=sys.stderr, flush=True)
        return ["--var", "disco_source=none"]
