"""Per-bake inputs of the qemu sources (packer/qemu.pkr.hcl), made by the bake wrapper.

A throw-away login for Packer's SSH communicator: a fresh user name and ed25519 key
per bake, put into the base by a NoCloud seed (cd_files, label cidata). The image
never keeps it: imagebake/qemu/finish-bake.sh removes the user at shutdown, and
cleanup() removes the key and seed here afterwards.

bake.py, for target qemu:
    inputs = bakeprep.prepare(variables.get("qemu_base"))   # Packer variables
    ... packer build -only=qemu.master,qemu.node with {**variables, **inputs.variables}
    entries = bakeprep.images_entries(manifest_builds, hashes)  # -> images.json["qemu"]
    inputs.cleanup()
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ImagebakeError
from . import kvm, seed

USER_PREFIX = "imagebake-bake"
# Variables of packer/qemu.pkr.hcl a user may set with --var (the rest are the wrapper's).
USER_VARS = ("qemu_base", "qemu_memory", "qemu_cpus", "qemu_disk_size", "qemu_output_dir")
WRAPPER_VARS = ("qemu_accelerator", "qemu_seed_dir", "qemu_ssh_username", "qemu_ssh_key")


@dataclass
class BakeInputs:
    variables: dict[str, str]
    workdir: Path
    accel: kvm.Accel
    extra: dict[str, Any] = field(default_factory=dict)

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def user_data(username: str, public_key: str) -> str:
    """cloud-config understood by Debian 12's cloud-init and trusty's 0.7.5."""
    return "\n".join([
        "#cloud-config",
        "users:",
        f"  - name: {username}",
        "    gecos: imagebake bake login (removed before the disk is saved)",
        "    shell: /bin/sh",
        "    lock_passwd: true",
        "    sudo: ['ALL=(ALL) NOPASSWD:ALL']",
        "    ssh_authorized_keys:",
        f"      - {public_key}",
        "ssh_pwauth: false",
        "disable_root: true",
        "",
    ])


def prepare(base: str | None = None) -> BakeInputs:
    """Make the seed and key; returns the Packer variables for the qemu sources."""
    if shutil.which("ssh-keygen") is None:
        raise ImagebakeError("ssh-keygen not found: apt-get install openssh-client")
    seed.iso_tool()  # Packer's cd_files needs mkisofs/xorriso on PATH
    accel = kvm.detect()
    if not base:
        from .. import qemu_base

        base = qemu_base.build()
    if not Path(base).is_file():
        raise ImagebakeError(f"qemu_base {base}: no such disk image "
                             "(`invoke base-image --target qemu`)")
    workdir = Path(tempfile.mkdtemp(prefix="imagebake-qemu-bake."))
    username = f"{USER_PREFIX}-{secrets.token_hex(4)}"
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", username, "-f",
                    str(key)], check=True, capture_output=True)
    public = (workdir / "id_ed25519.pub").read_text().strip()
    seed.write_files(workdir / "seed", user_data(username, public),
                     seed.meta_data(f"imagebake-bake-{secrets.token_hex(4)}", "imagebake-bake"))
    return BakeInputs(
        variables={
            "qemu_base": str(Path(base).resolve()),
            "qemu_accelerator": accel.name,
            "qemu_seed_dir": str(workdir / "seed"),
            "qemu_ssh_username": username,
            "qemu_ssh_key": str(key),
        },
        workdir=workdir, accel=accel,
    )


def images_entries(builds: dict[str, dict[str, Any]], hashes: dict[str, str]
                   ) -> dict[str, dict[str, Any]]:
    """{role: images.json entry} from the manifest's qemu builds (strip_path = false)."""
    out = {}
    for role, entry in builds.items():
        files = [f["name"] for f in entry.get("files") or [] if f["name"].endswith(".qcow2")]
        if not files:
            continue
        custom = entry.get("custom_data") or {}
        out[role] = {"id": str(Path(files[0]).resolve()), "content_hash": hashes.get(role, ""),
                     "disco_source": custom.get("disco_source", ""),
                     "built_at": custom.get("built_at", ""),
                     "accelerator": custom.get("accelerator", ""),
                     "base": custom.get("base", "")}
    return out


def read_images(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return (json.loads(Path(path).read_text()) or {}).get("qemu", {})
    except (OSError, ValueError):
        return {}


def packer_build(base: str | None = None, extra_vars: dict[str, str] | None = None,
                 roles: tuple[str, ...] = ("master", "node")) -> dict[str, Any]:
    """Bake the qemu sources with Packer directly (what bake.py does for target qemu):
    returns {"seconds": {role: s}, "images": {role: entry}, "accel": name}; writes
    build/images.json["qemu"]. Content hashes are bake.py's business (zeros here)."""
    import time

    from .. import bake as bake_mod
    from .. import packer

    root = bake_mod.ROOT
    inputs = prepare(base)
    manifest = root / "build" / "qemu-manifest.json"
    manifest.unlink(missing_ok=True)
    starts: dict[str, float] = {}
    seconds: dict[str, float] = {}

    def on_event(event: packer.Event) -> None:
        build = getattr(event, "build", None) or ""
        role = build.split(".")[-1]
        if isinstance(event, packer.BuildStart):
            starts[role] = time.monotonic()
        elif isinstance(event, packer.BuildEnd) and role in starts:
            seconds[role] = round(time.monotonic() - starts[role], 1)

    variables: dict[str, object] = {
        "disco_source": "none", **(extra_vars or {}), **inputs.variables,
        "manifest_path": str(manifest), "agent_dir": str(root / "imagebake" / "agent"),
    }
    try:
        result = packer.build(bake_mod.PACKER_DIR, [f"qemu.{r}" for r in roles], variables,
                              on_event=on_event, log_dir=root / "build" / "logs", cwd=root,
                              raise_on_error=False)
    finally:
        inputs.cleanup()
    if not result.ok:
        raise ImagebakeError(f"packer build (qemu) failed: {result.first_error} "
                             f"(log: {result.log_path})")
    entries = images_entries(bake_mod.read_manifest(manifest), {})
    bake_mod.write_images("qemu", entries)
    return {"seconds": seconds, "images": entries, "accel": inputs.accel.name}
