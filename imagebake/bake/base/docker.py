"""The docker target's base image: provision/base/docker-base.sh debootstraps Debian 12
with every package the provisioning needs and imports it as imagebake/base:bookworm
(idempotent: an image with the same recipe hash is kept). Never pulled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ...errors import ImagebakeError

ROOT = Path(__file__).resolve().parents[3]
DOCKER_BASE_SCRIPT = ROOT / "provision" / "base" / "docker-base.sh"
DOCKER_BASE_TAG = "imagebake/base:bookworm"


def _check_docker_host() -> None:
    if os.geteuid() != 0:
        raise ImagebakeError("building the base image needs root (debootstrap): run with sudo")
    if shutil.which("debootstrap") is None:
        raise ImagebakeError("debootstrap is not installed (apt-get install debootstrap)")
    from ...clients.docker import require_daemon

    require_daemon()


def build_docker(tag: str = DOCKER_BASE_TAG, mirror: str | None = None) -> str:
    _check_docker_host()
    argv = ["bash", str(DOCKER_BASE_SCRIPT), tag] + ([mirror] if mirror else [])
    # Echo the script's progress lines as they come; keep the last for the error.
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    last = ""
    for line in proc.stderr:
        print(line.rstrip("\n"), file=sys.stderr, flush=True)
        last = line.strip() or last
    if proc.wait() != 0:
        last = last or f"exit code {proc.returncode}"
        raise ImagebakeError(f"base image build failed: {last.removeprefix('[base-image] ')}")
    return f"base image {tag} ready"
