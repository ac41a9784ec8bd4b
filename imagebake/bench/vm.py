"""QEMU figures: bake time per role, boot-to-ready per VM, and which accelerator ran.

Prints and returns a dict. `bake` rebakes both roles (force) through the one bake path,
Target.bake(), timing each role's Packer build from its events (minutes under TCG); set
IMAGEBAKE_BENCH_VM_BAKE=0 to reuse the images in build/images.json.
"""

from __future__ import annotations

import json
import os
import time

from .. import state
from ..bake import packer
from ..clients import qemu as qemu_client
from ..targets.qemu import cluster as qemu_cluster

NAME = "benchvm"


class BuildTimer:
    """Seconds per role from Packer's BuildStart/BuildEnd events (Target.bake's on_event)."""

    def __init__(self) -> None:
        self.starts: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def __call__(self, event: packer.Event) -> None:
        role = (getattr(event, "build", None) or "").split(".")[-1]
        if isinstance(event, packer.BuildStart):
            self.starts[role] = time.monotonic()
        elif isinstance(event, packer.BuildEnd) and role in self.starts:
            self.seconds[role] = round(time.monotonic() - self.starts[role], 1)


def _bake() -> dict:
    from .. import targets

    timer = BuildTimer()
    started = time.monotonic()
    targets.get("qemu").bake(variables={"disco_source": "none"}, force=True,
                             on_event=timer)
    return {"seconds_per_role": timer.seconds,
            "wall_seconds": round(time.monotonic() - started, 1)}


def _boot_to_ready(slaves: int = 2) -> dict:
    """Launch without waiting, then note when each VM's agent answers and each node joins."""
    target = qemu_cluster.QemuTarget()
    if state.load(NAME):
        target.destroy(NAME)
    record = target.launch(name=NAME, slaves=slaves, wait=False)
    try:
        t0 = record["started_at"]
        per_vm: dict[str, float] = {}
        deadline = time.time() + qemu_cluster.READY_TIMEOUT_BASE
        ready_at = None
        while time.time() < deadline:
            report = qemu_cluster.status(record, per_node=False)
            if "master" not in per_vm and report["master"]["agent"]:
                per_vm["master"] = round(time.time() - t0, 1)
            for node in report["nodes"]:
                if node["joined"] and node["hostname"] not in per_vm:
                    per_vm[node["hostname"]] = round(
                        time.time() - record["vms"][node["hostname"]]["started_at"], 1)
            if report["ready"]:
                ready_at = round(time.time() - t0, 1)
                break
            time.sleep(2)
        return {"boot_to_ready_per_vm": per_vm, "cluster_ready_seconds": ready_at,
                "slaves": slaves, "memory_mib": qemu_cluster.MEMORY_MIB}
    finally:
        target.destroy(NAME)


def run() -> dict:
    accel = qemu_client.detect()
    report: dict = {"accel": accel.name, "accel_reason": accel.reason}
    if os.environ.get("IMAGEBAKE_BENCH_VM_BAKE", "1") != "0":
        report["bake"] = _bake()
    report["boot"] = _boot_to_ready()
    print(json.dumps(report, indent=2, sort_keys=True))
    return report
