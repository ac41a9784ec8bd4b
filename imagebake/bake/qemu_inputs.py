"""Per-bake inputs of the qemu sources (packer/qemu.pkr.hcl), made by the bake (build.py).

A throw-away login for Packer's SSH communicator: a fresh user name and ed25519 key
per bake, put into the base by a NoCloud seed (cd_files, label cidata). The image
never keeps it: imagebake/bake/qemu-finish-bake.sh removes the user at shutdown, and
cleanup() removes the key and seed here afterwards.

Target.bake of the qemu target:
    inputs = qemu_inputs.prepare(variables.get("qemu_base"))   # Packer variables
    ... packer build -only=qemu.master,qemu.node with {**variables, **inputs.variables}
    inputs.cleanup()
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clients import nocloud
from ..clients import qemu as qemu_client
from ..errors import ImagebakeError

USER_PREFIX = "imagebake-bake"


@dataclass
class BakeInputs:
    variables: dict[str, str]
    workdir: Path
    accel: qemu_client.Accel
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
    nocloud.iso_tool()  # Packer's cd_files needs mkisofs/xorriso on PATH
    accel = qemu_client.detect()
    if not base:
        from .base import qemu as qemu_base

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
    meta = nocloud.meta_data(f"imagebake-bake-{secrets.token_hex(4)}", "imagebake-bake")
    nocloud.write_files(workdir / "seed", user_data(username, public), meta)
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
