"""`invoke bake`: master and node images with Packer, skipped when unchanged.

The only bake path (the benchmarks time it through on_event). Per role: compute the
content hash of every input (hashing.py); an image that already carries that hash is
kept unless forced (existing.py); the rest bake in one `packer build` (roles in
parallel, packer.py). build/images.json records the result (records.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ImagebakeError
from ..progress import Board, Row
from . import existing, hashing, images, packer, records, vendor
from .records import ROOT, images_json_path
from .variables import DEFAULT_BASE, DEFAULTS, PACKER_DIR, SOURCE_TYPE, check, disco_tarball, hashed

LOCAL_TARGETS = ("docker", "qemu")  # may bake without Disco offline; aws never does
QEMU_FINISH_SCRIPT = ROOT / "imagebake" / "bake" / "qemu-finish-bake.sh"
AGENT_DIR = ROOT / "imagebake" / "agent"


# ------------------------------------------------------------------ per-target inputs
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


def _docker_image_id(ref: str) -> str:
    from ..clients.docker import docker

    return docker("image", "inspect", "--format", "{{.Id}}", ref, check=False).strip()


def _check_docker(variables: Mapping[str, str]) -> str:
    """Docker reachable and the base image present; returns the base image id."""
    from ..clients.docker import require_daemon

    require_daemon()
    base = variables["docker_base"]
    image_id = _docker_image_id(base)
    if not image_id:
        if base == DEFAULT_BASE:
            raise ImagebakeError(f"base image {base} not found: build it with `invoke base-image`")
        raise ImagebakeError(f"base image {base} not found locally (bakes never pull): "
                             f"`docker pull {base}` first")
    return image_id


def _prepare_docker(effective: dict[str, str]) -> Prepared:
    return Prepared(find=existing.docker_image,
                    hash_inputs={"base_image_id": _check_docker(effective)})


def _prepare_qemu(effective: dict[str, str]) -> Prepared:
    from . import qemu_inputs

    inputs = qemu_inputs.prepare(effective.get("qemu_base"))
    base = Path(inputs.variables["qemu_base"])
    effective["qemu_base"] = str(base)
    return Prepared(find=existing.qemu_image,
                    hash_inputs={"base_image_id": f"{base.stat().st_size}:"
                                                  f"{int(base.stat().st_mtime)}"},
                    extra_files=[QEMU_FINISH_SCRIPT], packer_vars=dict(inputs.variables),
                    cleanup=inputs.cleanup)  # the throw-away bake key and seed


def _prepare_aws(effective: dict[str, str]) -> Prepared:
    from ..clients import aws

    session = aws.make_session(effective.get("aws_region") or None, None)
    region = session.region_name
    effective["aws_region"] = region
    from .source_ami import apply_base

    apply_base(effective, region, session)  # --var base=: source AMI, login user, IMDSv2
    client = aws.ec2(session, region)
    return Prepared(find=lambda role, digest: existing.aws_image(client, region, role, digest),
                    region=region)


PREPARE: dict[str, Callable[[dict[str, str]], Prepared]] = {
    "docker": _prepare_docker, "qemu": _prepare_qemu, "aws": _prepare_aws}


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
def bake(target: str = "docker", only: str | None = None,
         variables: Mapping[str, str] | None = None, force: bool = False,
         on_event: Callable[[packer.Event], None] | None = None) -> dict[str, Any]:
    """Bake the target's images; returns what was built, skipped and recorded.
    ON_EVENT sees every Packer event (the benchmarks time the builds with it)."""
    user_vars = dict(variables or {})
    roles = check(target, only, user_vars)
    effective = {**DEFAULTS, **user_vars}
    images.deprecate_days(effective.get("ami_deprecate_after"))  # input first, then files
    # the Disco archives, before Packer: one line if one is missing (local targets go on
    # without Disco, one warning line, when they are missing and GitHub cannot be reached)
    vendor.resolve(effective, user_vars, may_go_without=target in LOCAL_TARGETS)
    packer.packer_bin()
    extra_files = disco_tarball(effective)
    prepared = PREPARE[target](effective)
    try:
        return _bake(target, roles, effective, extra_files, prepared, force, on_event)
    finally:
        prepared.cleanup()


def _hashes(target: str, effective: Mapping[str, str], prepared: Prepared,
            extra_files: list[Path]) -> dict[str, str]:
    return {role: hashing.content_hash(ROOT, target, role,
                                       {**hashed(target, effective), **prepared.hash_inputs},
                                       [*extra_files, *prepared.extra_files])
            for role in ("master", "node")}


def _bake(target: str, roles: Sequence[str], effective: dict[str, str],
          extra_files: list[Path], prepared: Prepared, force: bool,
          on_event: Callable[[packer.Event], None] | None) -> dict[str, Any]:
    hashes = _hashes(target, effective, prepared, extra_files)
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
        recorded.update(_packer_build(target, todo, effective, hashes, prepared, on_event))
    elif recorded:
        records.write_images(target, recorded)
    return {
        "target": target,
        "built": todo,
        "skipped": skipped,
        "seconds": round(time.monotonic() - started, 1),
        "images": recorded,
        "images_json": _rel(images_json_path()),
    }


def _packer_build(target: str, todo: list[str], effective: dict[str, str],
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
    only_builds = [f"{SOURCE_TYPE[target]}.{role}" for role in todo]
    print(f"baking {', '.join(todo)} ({target}) with Packer", file=sys.stderr, flush=True)
    with Board(plain=True) as board:
        progress = BuildProgress(board, todo, SOURCE_TYPE[target])

        def forward(event: packer.Event) -> None:
            progress(event)
            if on_event is not None:
                on_event(event)

        try:
            result = packer.build(PACKER_DIR, only_builds, packer_vars, on_event=forward,
                                  log_dir=ROOT / "build" / "logs", cwd=ROOT,
                                  raise_on_error=False)
        except BaseException:
            if target == "docker":
                _remove_leftover_containers(_containers_from_log())
            raise
    if target == "docker":
        _remove_leftover_containers(result.containers)
    built = records.read_manifest(manifest) if manifest.exists() else {}
    recorded: dict[str, dict[str, Any]] = {}
    for role in todo:
        if role in built and f"{SOURCE_TYPE[target]}.{role}" not in result.failed:
            entry = records.entry_from_manifest(target, role, built[role], hashes[role],
                                                prepared.region)
            if entry:
                recorded[role] = entry
    if recorded and target == "aws":
        try:  # IMDS support and deprecation: the EC2 API, whatever Packer's version
            images.finish_amis(recorded, effective)
        finally:
            records.write_images(target, recorded)
    elif recorded:
        records.write_images(target, recorded)
    if not result.ok:
        raise ImagebakeError(f"packer build failed: {result.first_error} "
                             f"(log: {_rel(result.log_path)})")
    return recorded


def _remove_leftover_containers(container_ids: Mapping[str, str]) -> None:
    """Packer removes its container on failure; make sure (e.g. after a kill)."""
    for cid in container_ids.values():
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60)


def _containers_from_log() -> dict[str, str]:
    """Container ids from the newest build log (after an interrupt)."""
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
