"""Real QEMU VMs booted the EC2 way: one cluster (master + 2 slaves) shared by every test.

The VMs get the AWS launcher's user data from the emulated metadata service
(HttpTokens=required at launch), plus one TTL node (see TTL_SECONDS); a capture on the
cluster bridge runs from before the first VM starts until the cluster is ready. Needs
root and qemu-system-x86. The images are baked here first (skipped when the inputs are
unchanged) with real Disco when vendor/disco/ holds its archives, else with
disco_source=none (the Disco tests then skip, saying so); IMAGEBAKE_QEMU_MASTER_IMAGE and
IMAGEBAKE_QEMU_NODE_IMAGE name other images instead. The cluster's name is
IMAGEBAKE_VM_TEST_NAME (default vmtest): its namespace is imagebake-NAME, so two runs on
one host need two names.
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

NAME = os.environ.get("IMAGEBAKE_VM_TEST_NAME", "vmtest")
RESULTS = Path("build/vm-test-results.json")
# The TTL node: added right after the cluster is ready, with HttpTokens=optional and a
# deadline TTL_SECONDS away. Its agent must be stopped before logind's nologin (the last
# 5 minutes) starts; it powers off while the other tests run (tests/vm/test_vm_cluster.py).
TTL_SECONDS = 540


@pytest.fixture(scope="session")
def vm_host():
    if os.geteuid() != 0:
        pytest.skip("VM tests need root (network namespaces, tap devices)")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 not installed")
    if not all(os.environ.get(f"IMAGEBAKE_QEMU_{r}_IMAGE") for r in ("MASTER", "NODE")):
        _bake()
    try:
        return qemu_cluster.image_paths()
    except ImagebakeError as exc:
        pytest.fail(f"{exc} (the VM tests run on baked images)")


def _bake() -> None:
    """`invoke bake --target qemu` as `invoke test` runs it: real Disco when the vendored
    archives are here (a Disco bake builds Erlang code in the VM: minutes), else none."""
    from imagebake import targets
    from imagebake.bake import variables, vendor

    given = variables.parse_vars(vendor.local_bake_vars()[1::2])
    try:
        targets.get("qemu").bake(variables=given)
    except ImagebakeError as exc:
        pytest.fail(f"qemu bake for the VM tests failed: {exc}")


@pytest.fixture(scope="session")
def cluster(vm_host, state_dir, tmp_path_factory):
    pcap = tmp_path_factory.mktemp("capture") / "bridge.pcap"
    if state.load(NAME):
        qemu_cluster.QemuTarget().destroy(NAME)
    started = time.time()
    try:
        record = qemu_cluster.QemuTarget(capture=str(pcap)).launch(name=NAME, slaves=2,
                                                                   http_tokens="required")
        record["pcap"] = qemu_cluster.stop_capture(record)
        record["launch_seconds"] = round(time.time() - started, 1)
        members = list(record["nodes"])
        deadline = int(time.time()) + TTL_SECONDS
        qemu_cluster.QemuTarget()._grow(record, 1, http_tokens="optional",
                                        ttl_deadline=deadline, wait=False)
        # not one of the cluster's nodes for the other tests: it will power itself off
        record["ttl_node"] = {"host": state.node_names(record)[-1], "deadline": deadline}
        record["nodes"] = members
        state.save(record)
        yield record
    finally:
        print(qemu_cluster.QemuTarget().destroy(NAME))
