"""A QEMU cluster (master + 2 slaves, booted from the baked qcow2 images) is ready by
the local cluster's definition, talks to nobody but its members, survives a slave
reboot and keeps its spec root-only."""

from __future__ import annotations

import json
import time

import pytest

from imagebake.disco import smoke
from imagebake.targets.qemu import cluster as qemu_cluster
from imagebake.targets.qemu.ssh import vm_exec

from .conftest import RESULTS
from .helpers import DISCO_CONFIG, fingerprint, lines_of, read, sh
from .pcap import flows

pytestmark = [pytest.mark.vm, pytest.mark.slow]


def names(record):
    return ["master", *record["nodes"]]


def _record_result(key: str, value) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[key] = value
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def test_cluster_became_ready(cluster):
    report = qemu_cluster.status(cluster)
    assert report["ready"], report
    _record_result("ready", {"accel": cluster["accel"], "ready_seconds": cluster["ready_seconds"],
                             "launch_seconds": cluster["launch_seconds"]})


def test_every_node_in_disco_config_with_string_worker_count(cluster):
    hosts = json.loads(read(cluster, "master", DISCO_CONFIG))["hosts"]
    assert sorted(h[0] for h in hosts) == sorted(cluster["nodes"])
    for name, workers in hosts:
        assert isinstance(workers, str) and workers.isdigit() and int(workers) > 0, (name, workers)


@pytest.mark.parametrize("index", [0, 1])
def test_disco_ssh_to_node_with_strict_host_key_checking(cluster, index):
    node = cluster["nodes"][index]
    out = sh(cluster, "master",
             f"ssh -o StrictHostKeyChecking=yes -o BatchMode=yes {node} hostname", user="disco")
    assert out.strip().splitlines()[-1] == node


def test_erlang_master_starts_remote_node_on_every_slave_over_ssh(cluster):
    rc, out = qemu_cluster.QemuTarget().exec(cluster, smoke.erlang_check_command(cluster["nodes"]),
                                       user="disco")
    for node in cluster["nodes"]:
        assert f"{node} ok imagebake_smoke@{node}" in out, out


def _answers(record, host, name) -> list[str]:
    out = sh(record, host, f"getent ahostsv4 {name} || true")
    return sorted({ln.split()[0] for ln in out.splitlines() if ln.strip()})


def test_every_vm_resolves_every_cluster_name_through_the_master(cluster):
    for host in cluster["nodes"]:
        resolv = read(cluster, host, "/etc/resolv.conf")
        assert f"nameserver {cluster['master_ip']}" in resolv.splitlines()[0:5], resolv
        for name in names(cluster):
            answers = _answers(cluster, host, name)
            assert answers, (host, name)
            if name != host:  # a VM's own name is 127.0.1.1 (Debian's /etc/hosts convention)
                assert cluster["vms"][name]["ip"] in answers, (host, name, answers)


def test_no_vm_gets_a_loopback_address_for_another_member(cluster):
    wrong = {}
    for host in names(cluster):
        for name in names(cluster):
            if name == host:
                continue
            loop = [a for a in _answers(cluster, host, name) if a.startswith("127.")]
            if loop:
                wrong[f"{host}->{name}"] = loop
    _record_result("loopback_answers", wrong)
    assert wrong == {}


def test_cluster_network_has_no_route_out(cluster):
    for host in names(cluster):
        routes = sh(cluster, host, "ip -4 route show")
        assert "default" not in routes, (host, routes)
    # The namespace holds the bridge and the taps, nothing with an address.
    import subprocess

    addrs = subprocess.run(["ip", "-n", cluster["netns"], "-4", "-o", "addr"],
                           capture_output=True, text=True, check=True).stdout
    assert [ln for ln in addrs.splitlines() if " lo " not in ln] == []
    routes = subprocess.run(["ip", "-n", cluster["netns"], "route"], capture_output=True,
                            text=True, check=True).stdout
    assert routes.strip() == ""


def test_boot_traffic_on_the_bridge_is_only_between_members(cluster):
    members = {v["ip"] for v in cluster["vms"].values()}
    sources = members | {"0.0.0.0"}  # 0.0.0.0: IGMP reports before an address is set
    counted = flows(cluster["pcap"])
    assert counted, "the capture saw nothing: was it running?"

    def on_link(dst: str) -> bool:
        # members, the subnet broadcast, or link-local multicast (IGMP, never routed)
        return (dst in members or dst in ("10.77.0.255", "255.255.255.255")
                or dst.startswith("224.0.0."))

    strangers = {k: v for k, v in counted.items()
                 if k[0] not in ("ipv4", "arp") or k[1] not in sources or not on_link(k[2])}
    by_kind: dict[str, int] = {}
    for (kind, _, _), size in counted.items():
        by_kind[kind] = by_kind.get(kind, 0) + size
    _record_result("capture_bytes", {"total": sum(counted.values()), "by_kind": by_kind,
                                     "flows": {" ".join(k): v for k, v in counted.items()},
                                     "strangers": {" ".join(k): v for k, v in strangers.items()}})
    assert strangers == {}, strangers


def test_spec_is_readable_only_by_root_on_every_vm(cluster):
    for host in names(cluster):
        for path in ("/var/lib/imagebake/spec.json", "/var/lib/cloud/instance/user-data.txt"):
            mode = sh(cluster, host, f"stat -L -c '%a %U' {path}").split()
            assert mode == ["600", "root"], (host, path, mode)
        denied = sh(cluster, host, "cat /var/lib/cloud/instance/user-data.txt", user="disco",
                    check=False)
        assert cluster["token"] not in denied and cluster["cookie"] not in denied
        seed = sh(cluster, host, "cat /dev/vdb | head -c 100000 | wc -c", user="disco",
                  check=False)
        assert seed.strip().splitlines()[-1] == "0", (host, seed)


def test_bake_login_did_not_survive(cluster):
    for host in names(cluster):
        assert "imagebake-bake" not in read(cluster, host, "/etc/passwd")
        assert "imagebake-bake" not in sh(cluster, host, "cat /etc/sudoers.d/* || true")


def test_slave_reboot_rejoins_without_duplicates_same_cookie(cluster):
    node = cluster["nodes"][-1]
    before = {h: fingerprint(cluster, h) for h in ("master", node)}
    boot_id = read(cluster, node, "/proc/sys/kernel/random/boot_id").strip()
    qemu_cluster.reboot(cluster, node)
    deadline = time.time() + 600
    while True:
        assert time.time() < deadline, f"{node} did not come back ready within 600 s"
        time.sleep(5)
        rc, now = vm_exec(cluster, node, "cat /proc/sys/kernel/random/boot_id",
                                       timeout=30, stderr=False)
        if rc != 0 or not now.strip() or now.strip() == boot_id:
            continue
        rc, _ = vm_exec(cluster, node, "imagebake-agent status >/dev/null",
                                     timeout=30)
        ran = sh(cluster, node, "journalctl -b -u imagebake-agent -o cat | wc -l")
        if rc == 0 and int(ran.strip().splitlines()[-1]) > 0:
            break
    assert qemu_cluster.status(cluster)["ready"]
    for host in ("master", node):
        for path in ("/home/disco/.ssh/known_hosts", "/home/disco/.ssh/authorized_keys"):
            lines = lines_of(cluster, host, path)
            assert len(lines) == len(set(lines)), (host, path, lines)
        after = fingerprint(cluster, host)
        assert after["/home/disco/.erlang.cookie"] == before[host]["/home/disco/.erlang.cookie"]
        assert after == before[host], (host, before[host], after)
    assert read(cluster, node, "/home/disco/.erlang.cookie").strip() == cluster["cookie"]
    out = sh(cluster, "master",
             f"ssh -o StrictHostKeyChecking=yes -o BatchMode=yes {node} hostname", user="disco")
    assert out.strip().splitlines()[-1] == node
