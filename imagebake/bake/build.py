"""`invoke bake`: master and node images with Packer, skipped when unchanged.

The only bake path (the benchmarks time it through on_event). Per role: compute the
content hash of every input (hashing.py); an image that already carries that hash is
kept unless forced (existing.py); the rest bake in one `packer build` (roles in
parallel, packer.py). build/images.json records the result (records.py).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ImagebakeError
from ..progress import Board, Row
from . import hashing, images, packer, records, vendor
from .records import ROOT, images_json_path
from .variables import DEFAULTS, PACKER_DIR, check, disco_tarball, hashed

AGENT_DIR = ROOT / "imagebake" / "agent"


# ------------------------------------------------------------------ what a target adds
@dataclass
class Prepared:
    """What a target adds to a bake: hash inputs, Packer variables, a finder of images
    baked from the same inputs, and what to clean up afterwards."""

    find: Callable[[str, str], dict[str, Any] | None]
    hash_inputs: dict[str, str] = field(default_factory=dict)
    extra_files: list[Path] = field(default_factory=list)
    packer_vars: dict[str, object] = field(default_factory=dict)
    region: str | None = None
    cleanup: Callable[[], None] = lambda: None


@dataclass
class ImageKind:
    """What one target's images are to the bake; the target hands it in
    (Target.image_kind), so the bake never asks which target it bakes for."""

    name: str                     # its key in build/images.json and in the content hash
    source_type: str              # the Packer source type of its builds (docker, qemu, ...)
    variables: tuple[str, ...]    # the Packer variables its images depend on (hashed)
    prepare: Callable[[dict[str, str]], Prepared]  # checks, hash inputs, finder; may fill
    #                                                effective variables in (aws_region)
    entry: Callable[[str, dict[str, Any], str, str | None], dict[str, Any] | None]
    #      (role, Packer manifest build, content hash, region) -> build/images.json entry
    finish: Callable[[dict[str, dict], dict[str, str]], Any] | None = None
    #      after Packer, before recording (aws: IMDS support and deprecation)
    leftovers: Callable[[Mapping[str, str]], None] | None = None
    #      what Packer may leave after a failure or a kill (docker: its containers)
    may_go_without_disco: bool = False
    #      offline with no Disco archives: bake without Disco after one warning (the local
    #      targets), instead of refusing (aws)


# ------------------------------------------------------------------ progress
class BuildProgress:
    """Packer's events as one progress row per role (plain lines when not a terminal)."""

    def __init__(self, board: Board, roles: Sequence[str], source_type: str) -> None:
        self.rows: dict[str, Row] = {f"{source_type}.{r}": board.row(r) for r in roles}

    @staticmethod
    def _step_text(text: str) -> str:
        m = re.fullmatch(r"Provisioning with shell script: .*/([^/]+)", text)
        if m:
            return f"provision {m.group(1)}"
        return text[:70]

    def __call__(self, event: packer.Event) -> None:
        row = self.rows.get(getattr(event, "build", None) or "")
        if row is None:
            return
        if isinstance(event, packer.BuildStart):
            row.restart_clock()
            row.update(status="running")
        elif isinstance(event, packer.BuildEnd):
            row.update(status="done" if event.ok else "FAILED",
                       step=row.step if event.ok else event.error[:70], finished=True)
        elif row.finished:
            return
        elif isinstance(event, packer.Ui) and event.level == "say" and event.text_only:
            row.update(step=self._step_text(event.text_only))
        elif isinstance(event, packer.Ui) and event.level == "message":
            m = re.match(r"\[imagebake [\w-]+\] (.*)", event.text_only)
            if m:
                row.board.progress.update(row.task, step=f"{row.step}  {m.group(1)[:60]}")


# ------------------------------------------------------------------ bake
def bake(kind: ImageKind, only: str | None = None,
         variables: Mapping[str, str] | None = None, force: bool = False,
         on_event: Callable[[packer.Event], None] | None = None) -> dict[str, Any]:
    """Bake KIND's images (Target.bake hands in its own); returns what was built, skipped
    and recorded. ON_EVENT sees every Packer event (the benchmarks time the builds)."""
    user_vars = dict(variables or {})
    roles = check(only, user_vars)
    effective = {**DEFAULTS, **user_vars}
    images.deprecate_days(effective.get("ami_deprecate_after"))  # input first, then files
    # the Disco archives, before Packer: one line if one is missing (local targets go on
    # without Disco, one warning line, when they are missing and GitHub cannot be reached)
    vendor.resolve(effective, user_vars, may_go_without=kind.may_go_without_disco)
    packer.packer_bin()
    extra_files = disco_tarball(effective)
    prepared = kind.prepare(effective)
    try:
        return _bake(kind, roles, effective, extra_files, prepared, force, on_event)
    finally:
        prepared.cleanup()


def _hashes(kind: ImageKind, effective: Mapping[str, str], prepared: Prepared,
            extra_files: list[Path]) -> dict[str, str]:
    return {role: hashing.content_hash(ROOT, kind.name, role,
                                       {**hashed(kind.variables, effective),
                                        **prepared.hash_inputs},
                                       [*extra_files, *prepared.extra_files])
            for role in ("master", "node")}


def _bake(kind: ImageKind, roles: Sequence[str], effective: dict[str, str],
          extra_files: list[Path], prepared: Prepared, force: bool,
          on_event: Callable[[packer.Event], None] | None) -> dict[str, Any]:
    hashes = _hashes(kind, effective, prepared, extra_files)
    recorded: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    todo: list[str] = []
    for role in roles:
        found = None if force else prepared.find(role, hashes[role])
        if found:
            print(f"{role}: {found['id']} is up to date (content hash "
                  f"{hashes[role][:12]}); skipping", file=sys.stderr, flush=True)
            recorded[role] = found
            skipped.append(role)
        else:
            todo.append(role)

    started = time.monotonic()
    if todo:
        recorded.update(_packer_build(kind, todo, effective, hashes, prepared, on_event))
    elif recorded:
        records.write_images(kind.name, recorded)
    return {
        "target": kind.name,
        "built": todo,
        "skipped": skipped,
        "seconds": round(time.monotonic() - started, 1),
        "images": recorded,
        "images_json": _rel(images_json_path()),
    }


def _packer_build(kind: ImageKind, todo: list[str], effective: dict[str, str],
                  hashes: dict[str, str], prepared: Prepared,
                  on_event: Callable[[packer.Event], None] | None) -> dict[str, dict[str, Any]]:
    """One `packer build` of the TODO roles; records what was built, raises on failure."""
    packer.init(PACKER_DIR)
    manifest = ROOT / "build" / "packer-manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    packer_vars: dict[str, object] = {
        **effective, "content_hash": hashes, "manifest_path": str(manifest),
        "agent_dir": str(AGENT_DIR), **prepared.packer_vars,
    }
    only_builds = [f"{kind.source_type}.{role}" for role in todo]
    print(f"baking {', '.join(todo)} ({kind.name}) with Packer", file=sys.stderr, flush=True)
    with Board(plain=True) as board:
        progress = BuildProgress(board, todo, kind.source_type)

        def forward(event: packer.Event) -> None:
            progress(event)
            if on_event is not None:
                on_event(event)

        try:
            result = packer.build(PACKER_DIR, only_builds, packer_vars, on_event=forward,
                                  log_dir=ROOT / "build" / "logs", cwd=ROOT,
                                  raise_on_error=False)
        except BaseException:
            if kind.leftovers:
                kind.leftovers(_containers_from_log())
            raise
    if kind.leftovers:
        kind.leftovers(result.containers)
    built = records.read_manifest(manifest) if manifest.exists() else {}
    recorded: dict[str, dict[str, Any]] = {}
    for role in todo:
        if role in built and f"{kind.source_type}.{role}" not in result.failed:
            entry = kind.entry(role, built[role], hashes[role], prepared.region)
            if entry:
                recorded[role] = entry
    if recorded and kind.finish:
        try:  # e.g. aws: IMDS support and deprecation, through the EC2 API
            kind.finish(recorded, effective)
        finally:
            records.write_images(kind.name, recorded)
    elif recorded:
        records.write_images(kind.name, recorded)
    if not result.ok:
        raise ImagebakeError(f"packer build failed: {result.first_error} "
                             f"(log: {_rel(result.log_path)})")
    return recorded


def _containers_from_log() -> dict[str, str]:
    """Container ids from the newest build log (after an interrupt: Packer's docker
    builder may not have removed them)."""
    logs = sorted((ROOT / "build" / "logs").glob("packer-build-*.log"))
    if not logs:
        return {}
    lines = logs[-1].read_text(errors="replace").splitlines()
    return packer.summarize(packer.parse(lines[1:]), logs[-1]).containers


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
