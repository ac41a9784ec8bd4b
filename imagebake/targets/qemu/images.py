"""The qemu target's images: what the bake needs from it (build.ImageKind) and the
bootable Debian 12 qcow2 it bakes from."""

from __future__ import annotations

from pathlib import Path

from ...bake import existing, records
from ...bake.build import ImageKind, Prepared
from ...bake.records import ROOT
from ...bake.variables import COMMON_VARS

FINISH_SCRIPT = ROOT / "imagebake" / "bake" / "qemu-finish-bake.sh"


def prepare(effective: dict[str, str]) -> Prepared:
    from ...bake import qemu_inputs

    inputs = qemu_inputs.prepare(effective.get("qemu_base"))
    base = Path(inputs.variables["qemu_base"])
    effective["qemu_base"] = str(base)
    return Prepared(find=existing.qemu_image,
                    hash_inputs={"base_image_id": f"{base.stat().st_size}:"
                                                  f"{int(base.stat().st_mtime)}"},
                    extra_files=[FINISH_SCRIPT], packer_vars=dict(inputs.variables),
                    cleanup=inputs.cleanup)  # the throw-away bake key and seed


KIND = ImageKind(name="qemu", source_type="qemu",
                 variables=(*COMMON_VARS, "qemu_base", "qemu_memory", "qemu_cpus",
                            "qemu_disk_size"),
                 prepare=prepare, entry=records.qemu_build_entry, may_go_without_disco=True)


def build_base() -> str:
    from ...bake.base import qemu

    return f"base image {qemu.build()} ready"
