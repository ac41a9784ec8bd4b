"""`invoke base-image`: the local base images bakes start from (never pulled).

docker: imagebake/base:bookworm (docker.py); qemu: a bootable Debian 12 qcow2 (qemu.py).
"""

from __future__ import annotations

import os

from ...errors import ImagebakeError

TARGETS = ("docker", "qemu")


def build(target: str = "docker") -> str:
    if target == "docker":
        from . import docker

        return docker.build_docker(docker.DOCKER_BASE_TAG,
                                   os.environ.get("IMAGEBAKE_DEBIAN_MIRROR"))
    if target == "qemu":
        from . import qemu

        return f"base image {qemu.build()} ready"
    raise ImagebakeError(f"unknown target {target!r} for base-image: choose docker or qemu")
