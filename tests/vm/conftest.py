"""Real QEMU VMs booted the EC2 way: one cluster (master + 2 slaves) shared by every test.

The VMs get the AWS launcher's user data from the emulated metadata service
(HttpTokens=required at launch), a capture on the cluster bridge runs from before the
first VM starts until the cluster is ready. Needs root, qemu-system-x86 and the baked
qemu images (`invoke bake --target qemu`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from imagebake import state
from imagebake.errors import ImagebakeError
from imagebake.targets.qemu import cluster as qemu_cluster

NAME = "vmtest"
RESULTS = Path("build/vm-test-results.json")


@pytest.fixture(scope="session")
def vm_host():
    if os.geteuid() != 0:
        pytest.skip("VM tests need root (network namespaces, tap devices)")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 not installed")
    try:
        return qemu_cluster.image_paths()
    except ImagebakeError as exc:
        pytest.fail(f"{exc} (the VM tests run on baked images)")


@pytest.fixture(scope="session")
def cluster(vm_host, state_dir, tmp_path_factory):
    pcap = tmp_path_factory.mktemp("capture") / "bridge.pcap"
    if state.load(NAME):
        qemu_cluster.QemuTarget().destroy(NAME)
    started = time.time()
    try:
        record = qemu_cluster.QemuTarget().launch(name=NAME, slaves=2, capture=str(pcap),
                                                  http_tokens="required")
        record["pcap"] = qemu_cluster.stop_capture(record)
        record["launch_seconds"] = round(time.time() - started, 1)
        yield record
    finally:
        print(qemu_cluster.QemuTarget().destroy(NAME))
