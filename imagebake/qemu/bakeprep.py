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
