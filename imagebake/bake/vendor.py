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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImagebakeError
from .records import ROOT

LOCK = ROOT / "vendor" / "disco.lock"
ARCHIVES = ROOT / "vendor" / "disco"
REMAKE = "remake it with `vendor/refresh.sh make` (needs GitHub or a git mirror)"
HOW_TO_GET = ("make it with `vendor/refresh.sh make` (needs GitHub), or bake without Disco: "
              "--var disco_source=none")


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
            raise ImagebakeError(f"missing archive {_rel(path)}: {HOW_TO_GET}")
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
