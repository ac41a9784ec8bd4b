"""The docker target's images: what the bake needs from it (build.ImageKind), the base
image it bakes from, and listing/pruning what was baked."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

from ...bake import existing, records
from ...bake.build import ImageKind, Prepared
from ...bake.variables import COMMON_VARS, DEFAULT_BASE
from ...clients.docker import docker, require_daemon
from ...errors import ImagebakeError


def image_id(ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref, check=False).strip()


def check_base(variables: Mapping[str, str]) -> str:
    """Docker reachable and the base image present; returns the base image id."""
    require_daemon()
    base = variables["docker_base"]
    found = image_id(base)
    if not found:
        if base == DEFAULT_BASE:
            raise ImagebakeError(f"base image {base} not found: build it with `invoke base-image`")
        raise ImagebakeError(f"base image {base} not found locally (bakes never pull): "
                             f"`docker pull {base}` first")
    return found


def prepare(effective: dict[str, str]) -> Prepared:
    return Prepared(find=existing.docker_image,
                    hash_inputs={"base_image_id": check_base(effective)})


def remove_leftovers(container_ids: Mapping[str, str]) -> None:
    """Packer removes its container on failure; make sure (e.g. after a kill)."""
    for cid in container_ids.values():
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60)


KIND = ImageKind(name="docker", source_type="docker",
                 variables=(*COMMON_VARS, "docker_base"), prepare=prepare,
                 entry=records.docker_entry, leftovers=remove_leftovers,
                 may_go_without_disco=True)


def build_base() -> str:
    """imagebake/base:bookworm: debootstrap of Debian 12, docker import (never pulled)."""
    from ...bake.base import docker as base

    return base.build_docker(base.DOCKER_BASE_TAG, os.environ.get("IMAGEBAKE_DEBIAN_MIRROR"))
