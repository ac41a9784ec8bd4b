"""`invoke bake`: master and node images with Packer, skipped when unchanged.

Per role: compute the content hash of every input (imagebake.hashing); an
image that already carries that hash is kept (unless force); the rest bake in
one `packer build` (roles in parallel). build/images.json records the result:

    {"docker": {"master": {"id": "imagebake/master:<hash12>", "image_id": "sha256:...",
                           "content_hash": "...", "disco_source": "none",
                           "built_at": "2024-01-01T00:00:00Z"}, "node": {...}},
     "aws": {"master": {"id": "ami-...", "region": "us-east-1", ...}, "node": {...}}}
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import hashing, packer
from .errors import ImagebakeError

ROOT = Path(__file__).resolve().parent.parent
PACKER_DIR = ROOT / "packer"
ROLES = ("master", "node")
QEMU_OUT = ROOT / "build" / "qemu"
TARGETS = ("docker", "aws", "qemu")
SOURCE_TYPE = {"docker": "docker", "aws": "amazon-ebs", "qemu": "qemu"}
DEFAULT_BASE = "imagebake/base:bookworm"
UPSTREAM_DISCO = "https://github.com/discoproject/disco.git"
# Always passed explicitly, so `--var disco_ref=0.5.4` hashes like no --var at all.
DEFAULTS: dict[str, str] = {
    "disco_source": UPSTREAM_DISCO,
    "disco_ref": "0.5.4",
    "docker_base": DEFAULT_BASE,
}
# Variables the wrapper owns: the user cannot set them.
WRAPPER_VARS = ("content_hash", "manifest_path", "agent_dir", "qemu_accelerator",
                "qemu_seed_dir", "qemu_ssh_username", "qemu_ssh_key")
# Only these matter to a target's images (others would change the hash for nothing).
TARGET_VARS = {
    "docker": ("disco_source", "disco_ref", "docker_base"),
    "aws": ("disco_source", "disco_ref", "aws_region", "source_ami", "instance_type",
            "ssh_username", "subnet_id", "encrypt_boot", "ami_name_prefix"),
    "qemu": ("disco_source", "disco_ref", "qemu_base", "qemu_memory", "qemu_cpus",
             "qemu_disk_size"),
}
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DECLARED = re.compile(r'^variable\s+"([^"]+)"', re.M)


def images_json_path() -> Path:
    return Path(os.environ.get("IMAGEBAKE_IMAGES_JSON") or ROOT / "build" / "images.json")


def declared_variables(template_dir: Path = PACKER_DIR) -> list[str]:
    text = "\n".join(p.read_text() for p in sorted(Path(template_dir).glob("*.pkr.hcl")))
    return sorted(_DECLARED.findall(text))


def parse_vars(items: Sequence[str]) -> dict[str, str]:
    """["k=v", ...] -> {k: v}; a malformed or repeated item is one-line error."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not _VAR_NAME.match(key):
            raise ImagebakeError(
                f"malformed --var {item!r}: expected key=value, e.g. --var disco_source=none")
        if key in out:
            raise ImagebakeError(f"--var {key} given twice")
        if "\n" in value:
            raise ImagebakeError(f"--var {key}: the value must be one line")
        out[key] = value
    return out


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------ checks
def _check_inputs(target: str, only: str | None, variables: Mapping[str, str]) -> tuple[str, ...]:
    if target not in TARGETS:
        raise ImagebakeError(f"unknown target {target!r}: choose docker, aws or qemu")
    if only is not None and only not in ROLES:
        raise ImagebakeError(f"unknown role {only!r} for --only: choose master or node")
    declared = declared_variables()
    for key in variables:
        if key in WRAPPER_VARS:
            raise ImagebakeError(f"--var {key} is set by imagebake itself")
        if key not in declared:
            settable = ", ".join(v for v in declared if v not in WRAPPER_VARS)
            raise ImagebakeError(f"unknown variable {key!r}: choose one of {settable}")
    return (only,) if only else ROLES


def _docker(*args: str, check: bool = True) -> str:
    from .docker_cli import docker

    return docker(*args, check=check)


def _docker_image_id(ref: str) -> str:
    return _docker("image", "inspect", "--format", "{{.Id}}", ref, check=False).strip()


def _check_docker(variables: Mapping[str, str]) -> str:
    """Docker reachable and the base image present; returns the base image id."""
    from .docker_cli import require_daemon

    require_daemon()
    base = variables["docker_base"]
    image_id = _docker_image_id(base)
    if not image_id:
        if base == DEFAULT_BASE:
            raise ImagebakeError(f"base image {base} not found: build it with `invoke base-image`")
        raise ImagebakeError(f"base image {base} not found locally (bakes never pull): "
                             f"`docker pull {base}` first")
    return image_id


def _disco_tarball(variables: dict[str, str]) -> list[Path]:
    """A local Disco tarball becomes an absolute path and a hash input."""
    source = variables["disco_source"]
    if source == "none" or "://" in source or source.startswith("git@"):
        return []
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise ImagebakeError(f"disco_source {source}: no such file (expected none, a git URL "
                             "or a Disco source tarball)")
    variables["disco_source"] = str(path)
    return [path]


# ------------------------------------------------------------------ existing images
def _docker_existing(role: str, digest: str) -> dict[str, Any] | None:
    ref = f"imagebake/{role}:{digest[:12]}"
    out = _docker("image", "inspect", ref, check=False)
    if not out.strip():
        return None
    info = json.loads(out)[0]
    labels = (info.get("Config") or {}).get("Labels") or {}
    if labels.get("imagebake.content-hash") != digest:
        return None
    _docker("tag", ref, f"imagebake/{role}:latest")
    return {"id": ref, "image_id": info["Id"], "content_hash": digest,
            "disco_source": labels.get("imagebake.disco-source", ""),
            "built_at": labels.get("imagebake.built-at") or info.get("Created", "")[:19] + "Z"}


def _qemu_existing(role: str, digest: str) -> dict[str, Any] | None:
    """The newest qcow2 baked from the same inputs (build/qemu/<role>-<hash12>-<stamp>/)."""
    found = sorted(QEMU_OUT.glob(f"{role}-{digest[:12]}-*/imagebake-{role}-{digest[:12]}.qcow2"))
    if not found:
        return None
    return {"id": str(found[-1].resolve()), "content_hash": digest,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                      time.gmtime(found[-1].stat().st_mtime))}


def _aws_existing(client: Any, region: str, role: str, digest: str) -> dict[str, Any] | None:
    import botocore.exceptions

    from .aws import session as aws

    try:
        images = client.describe_images(Owners=["self"], Filters=[
            {"Name": "tag:imagebake:content-hash", "Values": [digest]},
            {"Name": "tag:imagebake:role", "Values": [role]},
            {"Name": "state", "Values": ["available"]},
        ])["Images"]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise ImagebakeError(aws.explain(exc, "looking for baked AMIs", region=region)) from None
    if not images:
        return None
    image = max(images, key=lambda i: i.get("CreationDate", ""))
    tags = {t["Key"]: t["Value"] for t in image.get("Tags") or []}
    return {"id": image["ImageId"], "region": region, "name": image.get("Name", ""),
            "content_hash": digest, "disco_source": tags.get("imagebake:disco-ref", ""),
            "built_at": tags.get("imagebake:built-at") or image.get("CreationDate", "")}


# ------------------------------------------------------------------ progress
class Progress:
    """Live per-build table on a terminal; plain step lines otherwise (both on stderr)."""

    def __init__(self, roles: Sequence[str], source_type: str) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.names = {f"{source_type}.{r}": r for r in roles}
        self.rows: dict[str, dict[str, Any]] = {
            r: {"status": "waiting", "step": "", "detail": "", "start": time.monotonic(),
                "end": None} for r in roles}
        self.live: Any = None

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._table(), console=self.console, refresh_per_second=4,
                             transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(None, None, None)

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for col in ("role", "status", "elapsed", "step"):
            table.add_column(col, no_wrap=True, overflow="ellipsis")
        now = time.monotonic()
        for role, row in self.rows.items():
            elapsed = (row["end"] or now) - row["start"]
            step = row["step"] + (f"  [dim]{row['detail']}[/dim]" if row["detail"] else "")
            table.add_row(role, row["status"], f"{elapsed:5.0f}s", step)
        return table

    @staticmethod
    def _step_text(text: str) -> str:
        m = re.match(r"Provisioning with shell script: .*/([^/]+)$", text)
        if m:
            return f"provision {m.group(1)}"
        return text[:70]

    def __call__(self, event: packer.Event) -> None:
        build = getattr(event, "build", None)
        role = self.names.get(build or "")
        if role is None:
            return
        row = self.rows[role]
        changed = False
        if isinstance(event, packer.BuildStart):
            row.update(status="running", start=time.monotonic())
            changed = True
        elif isinstance(event, packer.BuildEnd):
            row.update(status="done" if event.ok else "FAILED", end=time.monotonic(),
                       step=event.error[:70] if not event.ok else row["step"], detail="")
            changed = True
        elif row["end"] is not None:
            return
        elif isinstance(event, packer.Ui) and event.level == "say" and event.text_only:
            row.update(step=self._step_text(event.text_only), detail="")
            changed = True
        elif isinstance(event, packer.Ui) and event.level == "message":
            m = re.match(r"\[imagebake [\w-]+\] (.*)", event.text_only)
            if m:
                row["detail"] = m.group(1)[:60]
        if self.live is not None:
            self.live.update(self._table())
        elif changed:
            print(f"[{role}] {row['status']}: {row['step']}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ manifest / images.json
def read_manifest(path: Path, run_uuid: str | None = None) -> dict[str, dict[str, Any]]:
    """{role: build entry} of the manifest's last run."""
    data = json.loads(Path(path).read_text())
    uuid = run_uuid or data.get("last_run_uuid")
    out = {}
    for entry in data.get("builds", []):
        if uuid and entry.get("packer_run_uuid") != uuid:
            continue
        out[entry["name"]] = entry
    return out


def _entry_from_manifest(target: str, role: str, entry: dict[str, Any], digest: str,
                         region: str | None) -> dict[str, Any]:
    custom = entry.get("custom_data") or {}
    artifact = entry.get("artifact_id", "")
    record: dict[str, Any] = {"content_hash": digest,
                              "disco_source": custom.get("disco_source", ""),
                              "built_at": custom.get("built_at") or _utc_now()}
    if target == "docker":
        record = {"id": f"imagebake/{role}:{digest[:12]}", "image_id": artifact, **record}
    elif target == "qemu":
        from .qemu import bakeprep

        return bakeprep.images_entries({role: entry}, {role: digest})[role]
    else:
        # amazon-ebs: "us-east-1:ami-0123,..." (one region here)
        first = artifact.split(",")[0]
        reg, _, ami = first.partition(":")
        record = {"id": ami or first, "region": reg or region, **record}
    return record


def recorded_images(target: str) -> dict[str, dict[str, Any]]:
    """{role: entry} of TARGET in build/images.json ({} when nothing is recorded)."""
    try:
        return (json.loads(images_json_path().read_text()) or {}).get(target) or {}
    except (OSError, ValueError):
        return {}


def write_images(target: str, entries: Mapping[str, dict[str, Any]],
                 path: Path | None = None) -> Path:
    path = path or images_json_path()
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text()) or {}
        except ValueError:
            data = {}
    data.setdefault(target, {}).update(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def _remove_leftover_containers(container_ids: Mapping[str, str]) -> None:
    """Packer removes its container on failure; make sure (e.g. after a kill)."""
    for cid in container_ids.values():
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60)


# ------------------------------------------------------------------ bake
def bake(target: str = "docker", only: str | None = None,
         variables: Mapping[str, str] | None = None, force: bool = False,
         on_event: Callable[[packer.Event], None] | None = None) -> dict[str, Any]:
    """Bake the target's images; returns what was built, skipped and recorded."""
    user_vars = dict(variables or {})
    roles = _check_inputs(target, only, user_vars)
    packer.packer_bin()
    effective = {**DEFAULTS, **user_vars}
    extra_files = _disco_tarball(effective)
    extra_inputs: dict[str, str] = {}
    client = None
    region: str | None = None
    qemu_inputs = None
    if target == "docker":
        extra_inputs["base_image_id"] = _check_docker(effective)
    elif target == "qemu":
        from .qemu import bakeprep

        qemu_inputs = bakeprep.prepare(effective.get("qemu_base"))
        base = Path(qemu_inputs.variables["qemu_base"])
        effective["qemu_base"] = str(base)
        extra_inputs["base_image_id"] = f"{base.stat().st_size}:{int(base.stat().st_mtime)}"
        extra_files.append(ROOT / "imagebake" / "qemu" / "finish-bake.sh")
    else:
        from .aws import session as aws

        session = aws.make_session(effective.get("aws_region") or None, None)
        region = session.region_name
        effective["aws_region"] = region
        if not effective.get("source_ami"):
            from .ami import resolve_source_ami

            effective["source_ami"] = resolve_source_ami(region, session)
        client = aws.ec2(session, region)

    hashed_vars = {k: v for k, v in effective.items() if k in TARGET_VARS[target]}
    hashes = {role: hashing.content_hash(ROOT, target, role, {**hashed_vars, **extra_inputs},
                                         extra_files) for role in ROLES}

    recorded: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    todo: list[str] = []
    for role in roles:
        existing = None
        if not force:
            if target == "docker":
                existing = _docker_existing(role, hashes[role])
            elif target == "qemu":
                existing = _qemu_existing(role, hashes[role])
            else:
                existing = _aws_existing(client, region or "", role, hashes[role])
        if existing:
            print(f"{role}: {existing['id']} is up to date (content hash "
                  f"{hashes[role][:12]}); skipping", file=sys.stderr, flush=True)
            recorded[role] = existing
            skipped.append(role)
        else:
            todo.append(role)

    if qemu_inputs and not todo:
        qemu_inputs.cleanup()
    started = time.monotonic()
    if todo:
        packer.init(PACKER_DIR)
        manifest = ROOT / "build" / "packer-manifest.json"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.unlink(missing_ok=True)
        packer_vars: dict[str, object] = {
            **effective, "content_hash": hashes, "manifest_path": str(manifest),
            "agent_dir": str(ROOT / "imagebake" / "agent"),
            **(qemu_inputs.variables if qemu_inputs else {}),
        }
        only_builds = [f"{SOURCE_TYPE[target]}.{role}" for role in todo]
        print(f"baking {', '.join(todo)} ({target}) with Packer", file=sys.stderr, flush=True)
        with Progress(todo, SOURCE_TYPE[target]) as progress:
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
            finally:
                if qemu_inputs:
                    qemu_inputs.cleanup()  # the throw-away bake key and seed
        if target == "docker":
            _remove_leftover_containers(result.containers)
        built = read_manifest(manifest) if manifest.exists() else {}
        for role in todo:
            if role in built and f"{SOURCE_TYPE[target]}.{role}" not in result.failed:
                recorded[role] = _entry_from_manifest(target, role, built[role], hashes[role],
                                                      region)
        if recorded:
            write_images(target, recorded)
        if not result.ok:
            raise ImagebakeError(f"packer build failed: {result.first_error} "
                                 f"(log: {_rel(result.log_path)})")
    elif recorded:
        write_images(target, recorded)

    return {
        "target": target,
        "built": todo,
        "skipped": skipped,
        "seconds": round(time.monotonic() - started, 1),
        "images": recorded,
        "images_json": _rel(images_json_path()),
    }


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
