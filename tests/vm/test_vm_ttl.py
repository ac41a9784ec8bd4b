"""Last on the shared cluster: a node added with HttpTokens=optional and a TTL a few
minutes away joins (a fresh boot in IMDSv1-allowed mode), then powers itself off at the
deadline although its agent has been stopped (the power-off belongs to its own unit)."""

from __future__ import annotations

import time

import pytest

from imagebake.targets.qemu import cluster as qemu_cluster
from imagebake.targets.qemu import ec2, vm

from .helpers import sh

pytestmark = [pytest.mark.vm, pytest.mark.slow]
TTL_SECONDS = 330


def test_node_with_optional_tokens_joins_and_powers_off_at_ttl_with_agent_stopped(cluster):
    deadline = int(time.time()) + TTL_SECONDS
    target = qemu_cluster.QemuTarget()
    have = list(cluster["nodes"])
    target._grow(cluster, 1, http_tokens="optional", ttl_deadline=deadline)
    node = [h for h in cluster["nodes"] if h not in have][0]
    assert cluster["vms"][node]["http_tokens"] == "optional"
    report = qemu_cluster.status(cluster)
    assert report["ready"] and node in [n["hostname"] for n in report["nodes"] if n["joined"]]
    joined_at = time.time()
    assert joined_at < deadline - 30, "the node joined too late to test the TTL"
    assert any(ln.split()[1] == cluster["vms"][node]["ip"] and "/user-data 200" in ln
               for ln in ec2.requests(cluster))
    # the TTL is handed to logind at boot; stopping the agent does not cancel it
    sh(cluster, node, "systemctl stop imagebake-agent")
    assert sh(cluster, node, "systemctl is-active imagebake-agent", check=False).strip() != \
        "active"
    assert "USEC=" in sh(cluster, node, "cat /run/systemd/shutdown/scheduled")
    pidfile = vm.paths(cluster, node)["pid"]
    while vm.read_pid(pidfile) is not None:
        assert time.time() < deadline + 90, f"{node} still running 90 s after its TTL"
        time.sleep(5)
    off = time.time()
    assert off >= deadline - 5, f"{node} powered off {deadline - off:.0f}s before its TTL"
    # the rest of the cluster is unaffected
    rest = qemu_cluster.status(cluster)
    assert rest["master"]["state"] == "running" and node in rest["missing"]
