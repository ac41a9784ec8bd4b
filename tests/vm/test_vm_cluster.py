"""A QEMU cluster booted the EC2 way (master + 2 slaves from the baked qcow2 images, the
AWS launcher's user data from the emulated metadata service, cloud-init's Ec2
datasource) is ready by the signed status call, talks to nobody but its members and the
emulated EC2 fabric, keeps the user data from the disco user, survives a slave reboot
(after switching it to HttpTokens=optional) and announces the master's VM address."""

from __future__ import annotations

import base64
import json
import time

import pytest

from imagebake import agent_client, state
from imagebake.agent_client import AgentClient
from imagebake.disco import smoke
from imagebake.targets.aws import userdata as aws_userdata
from imagebake.targets.qemu import cluster as qemu_cluster
from imagebake.targets.qemu import ec2, vm
from imagebake.targets.qemu.ssh import known_hosts_path, vm_exec
from imagebake.targets.qemu.ssh import pinned as pinned_keys
from imagebake.targets.ready import cluster_ready

from .conftest import RESULTS
from .helpers import DISCO_CONFIG, fingerprint, lines_of, read, sh
from .pcap import flows

pytestmark = [pytest.mark.vm, pytest.mark.slow]


def names(record):
    return ["master", *state.node_names(record)]


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


def _joined(record) -> set[str]:
    reply = AgentClient().status("127.0.0.1", record["ports"]["join"], record)
    return agent_client.joined_names(reply)


def test_ttl_node_with_optional_tokens_joins_then_its_agent_is_stopped(cluster):
    """A fresh boot with HttpTokens=optional forms/joins the cluster; then its agent is
    stopped (the power-off is checked by the last test, after the others ran)."""
    node, deadline = cluster["ttl_node"]["host"], cluster["ttl_node"]["deadline"]
    assert cluster["vms"][node]["http_tokens"] == "optional"
    nologin = deadline - 300  # logind refuses non-root logins in the last 5 minutes
    while node not in _joined(cluster):
        assert time.time() < nologin - 20, f"{node} did not join before its TTL's last minutes"
        time.sleep(3)
    qemu_cluster.status(cluster)  # pins its host key from the signed reply
    assert any(ln.split()[1] == cluster["vms"][node]["ip"] and "/user-data 200" in ln
               for ln in ec2.requests(cluster))
    sh(cluster, node, "systemctl stop imagebake-agent")
    assert sh(cluster, node, "systemctl is-active imagebake-agent", check=False).strip() \
        != "active"
    # the TTL belongs to logind, scheduled at boot by its own unit
    assert "USEC=" in sh(cluster, node, "cat /run/systemd/shutdown/scheduled")
    _record_result("ttl_node", {"joined_after_seconds": round(
        time.time() - cluster["vms"][node]["started_at"], 1)})


def test_status_is_the_signed_call_and_pins_host_keys_from_it(cluster):
    reply = AgentClient().status("127.0.0.1", cluster["ports"]["join"], cluster)
    assert reply is not None and cluster_ready(master_running=True, reply=reply,
                                                 expected=len(state.node_names(cluster)))
    pins = pinned_keys(cluster)  # the known_hosts file: the one store of pinned keys
    assert agent_client.master_host_key(reply) == pins[cluster["master_ip"]]
    node_ips = {v["ip"] for h, v in cluster["vms"].items() if h != "master"}
    master_hosts = {cluster["master_ip"], f"[127.0.0.1]:{cluster['ports']['ssh']}"}
    assert set(pins) - master_hosts == node_ips  # pinned under the private IPs only
    for host in state.node_names(cluster):
        ip = cluster["vms"][host]["ip"]
        key = sh(cluster, host, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
        assert pins[ip] == " ".join(key)
    pinned = known_hosts_path(cluster).read_text()
    assert f"[127.0.0.1]:{cluster['ports']['ssh']},{cluster['master_ip']} " in pinned
    # a reply signed with another key is not believed (no readiness, no key); a node's
    # join token gets no status either (issue 21 N1)
    forged = dict(cluster, launcher_key="0" * len(cluster["launcher_key"]))
    assert AgentClient().status("127.0.0.1", cluster["ports"]["join"], forged) is None
    as_node = dict(cluster, launcher_key=cluster["token"])
    assert AgentClient().status("127.0.0.1", cluster["ports"]["join"], as_node) is None


def test_cloud_init_took_everything_from_the_ec2_datasource(cluster):
    for host in names(cluster):
        vmrec = cluster["vms"][host]
        data = json.loads(sh(cluster, host, "cat /run/cloud-init/instance-data.json"))
        assert data["v1"]["cloud_name"] == "aws", (host, data["v1"])
        assert data["v1"]["instance_id"] == vmrec["instance_id"]
        assert data["v1"]["availability_zone"] == ec2.AVAILABILITY_ZONE
        assert "DataSourceEc2" in sh(cluster, host, "cat /run/cloud-init/status.json")
        assert sh(cluster, host, "cat /sys/class/dmi/id/product_uuid").strip() == \
            vmrec["smbios_uuid"]
        assert "cidata" not in sh(cluster, host, "blkid -o value -s LABEL; true").lower()
        # the user data on the machine is the AWS launcher's, byte for byte
        on_vm = sh(cluster, host, "cat /var/lib/cloud/instance/user-data.txt")
        assert on_vm == vmrec["user_data"]
        report = json.loads(sh(cluster, host, "imagebake-agent status --json"))
        assert "from /var/lib/cloud/instance/user-data.txt" in report["phases"]["spec"]["detail"]
    master = json.loads(cluster["vms"]["master"]["user_data"])
    assert master["master"]["address"] is None  # the AWS shape: unknown at launch
    assert cluster["vms"]["master"]["user_data"] == aws_userdata.render(master)
    for host in state.node_names(cluster):
        assert cluster["vms"][host]["user_data"] == aws_userdata.render(
            aws_userdata.node_spec(qemu_cluster._aws_view(cluster)))


def test_every_node_sees_the_master_vm_address_never_loopback(cluster):
    master_ip = cluster["master_ip"]
    reply = AgentClient().status("127.0.0.1", cluster["ports"]["join"], cluster)
    assert reply["master_addresses"] == [master_ip]
    serve = json.loads(sh(cluster, "master", "imagebake-agent status --json"))
    assert f"master address {master_ip}" in serve["phases"]["serve"]["detail"]
    for host in state.node_names(cluster):
        assert _answers(cluster, host, "master") == [master_ip], host
        keys = [k for k in lines_of(cluster, host, "/home/disco/.ssh/authorized_keys")
                if not k.startswith("#")]
        assert keys and all(f'from="{master_ip}"' in k for k in keys), (host, keys)
        assert "127." not in " ".join(keys)
        known = lines_of(cluster, host, "/home/disco/.ssh/known_hosts")
        master_line = [k for k in known if k.split()[0].split(",")[0] == "master"]
        assert master_line and master_ip in master_line[0].split()[0].split(","), known
        assert not [h for h in master_line[0].split()[0].split(",") if h.startswith("127.")]


def test_every_node_in_disco_config_with_string_worker_count(cluster):
    hosts = json.loads(read(cluster, "master", DISCO_CONFIG))["hosts"]
    members = state.node_names(cluster) + [cluster["ttl_node"]["host"]]
    assert sorted(h[0] for h in hosts) == sorted(members)
    for name, workers in hosts:
        assert isinstance(workers, str) and workers.isdigit() and int(workers) > 0, (name, workers)


@pytest.mark.parametrize("index", [0, 1])
def test_disco_ssh_to_node_with_strict_host_key_checking(cluster, index):
    node = state.node_names(cluster)[index]
    out = sh(cluster, "master",
             f"ssh -o StrictHostKeyChecking=yes -o BatchMode=yes {node} hostname", user="disco")
    assert out.strip().splitlines()[-1] == node


def test_erlang_master_starts_remote_node_on_every_slave_over_ssh(cluster):
    command = smoke.erlang_check_command(state.node_names(cluster))
    rc, out = qemu_cluster.QemuTarget().exec(cluster, command, user="disco")
    for node in state.node_names(cluster):
        assert f"{node} ok imagebake_smoke@{node}" in out, out


def _answers(record, host, name) -> list[str]:
    out = sh(record, host, f"getent ahostsv4 {name} || true")
    return sorted({ln.split()[0] for ln in out.splitlines() if ln.strip()})


def test_every_vm_resolves_every_cluster_name_through_the_master(cluster):
    for host in state.node_names(cluster):
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
        # DHCP (option 121) gave one route: the metadata address, on the link
        assert "169.254.169.254 dev eth0" in routes, (host, routes)
        assert sh(cluster, host, "ip -4 -o addr show dev eth0").split()[3] == \
            f"{cluster['vms'][host]['ip']}/24"
    # The namespace holds the bridge, the taps and the fabric's two addresses: no veth,
    # no route but the bridge's own subnet.
    import subprocess

    addrs = subprocess.run(["ip", "-n", cluster["netns"], "-4", "-o", "addr"],
                           capture_output=True, text=True, check=True).stdout
    found = sorted(ln.split()[3] for ln in addrs.splitlines() if " lo " not in ln)
    assert found == ["10.77.0.1/24", "169.254.169.254/32"], addrs
    links = subprocess.run(["ip", "-n", cluster["netns"], "-o", "link"],
                           capture_output=True, text=True, check=True).stdout
    assert "veth" not in links
    routes = subprocess.run(["ip", "-n", cluster["netns"], "route"], capture_output=True,
                            text=True, check=True).stdout
    assert "default" not in routes and routes.strip().splitlines() == [
        ln for ln in routes.strip().splitlines() if ln.startswith("10.77.0.0/24 dev br0")]


def test_boot_traffic_on_the_bridge_is_only_between_members(cluster):
    members = {v["ip"] for v in cluster["vms"].values()}
    fabric = {qemu_cluster.GATEWAY_IP, "169.254.169.254"}  # DHCP, metadata, forwards
    # 0.0.0.0: DHCP discovers and IGMP reports before an address is set
    sources = members | fabric | {"0.0.0.0"}
    counted = flows(cluster["pcap"])
    assert counted, "the capture saw nothing: was it running?"

    def on_link(dst: str) -> bool:
        # members, the subnet broadcast, or link-local multicast (IGMP, never routed)
        return (dst in members or dst in fabric or dst in ("10.77.0.255", "255.255.255.255")
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



IMDS_GET = """\
import urllib.request, urllib.error
def call(method, path, headers):
    req = urllib.request.Request("http://169.254.169.254" + path, method=method,
                                 headers=headers, data=b"" if method == "PUT" else None)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:  # TCG guests on a busy host
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError as e:
        return "refused", str(e)
code, token = call("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
print("token", code)
if code == "refused":
    print("why", token)
print("v1", call("GET", "/latest/meta-data/instance-id", {})[0])
if code == 200:
    print("v2", call("GET", "/latest/user-data", {"X-aws-ec2-metadata-token": token})[0])
    print("ipv4", call("GET", "/latest/meta-data/local-ipv4",
                       {"X-aws-ec2-metadata-token": token})[1])
"""


def _imds(record, host, user="root"):
    script = base64.b64encode(IMDS_GET.encode()).decode()
    out = sh(record, host, f"echo {script} | base64 -d | python3", user=user, check=False)
    return dict(ln.split(" ", 1) for ln in out.splitlines() if " " in ln)


def test_disco_cannot_read_the_user_data_through_imds_or_cloud_init(cluster):
    for host in names(cluster):
        as_root = _imds(cluster, host)
        assert as_root["token"] == "200" and as_root["v2"] == "200", (host, as_root)
        assert as_root["v1"] == "401", (host, as_root)  # HttpTokens=required
        assert as_root["ipv4"] == cluster["vms"][host]["ip"]  # per instance
        as_disco = _imds(cluster, host, user="disco")
        assert as_disco["token"] == "refused" and as_disco["v1"] == "refused", (host, as_disco)
        found = sh(cluster, host, f"grep -rls {cluster['token']} /var/lib/cloud /run/cloud-init "
                   "/var/log /run/imagebake /var/lib/imagebake /etc 2>/dev/null; true",
                   user="disco", check=False)
        assert found.strip() == "", (host, found)
        fence = sh(cluster, host, "iptables -S OUTPUT")
        assert "-d 169.254.169.254/32 -m owner ! --uid-owner 0 -j REJECT" in fence


def test_every_metadata_request_of_the_boot_used_a_token(cluster):
    lines = [ln for ln in ec2.requests(cluster) if " GET " in ln or " PUT " in ln]
    for host in names(cluster):
        mine = [ln for ln in lines if ln.split()[1] == cluster["vms"][host]["ip"]]
        assert any(" PUT /latest/api/token 200" in ln for ln in mine), host
        assert any("/user-data 200 token=v2" in ln for ln in mine), host
        assert not [ln for ln in mine if " 200 token=v1" in ln], host


def test_bake_login_did_not_survive(cluster):
    for host in names(cluster):
        assert "imagebake-bake" not in read(cluster, host, "/etc/passwd")
        assert "imagebake-bake" not in sh(cluster, host, "cat /etc/sudoers.d/* || true")


def test_slave_reboot_with_optional_tokens_rejoins_without_duplicates(cluster):
    node = state.node_names(cluster)[-1]
    ec2.set_http_tokens(cluster, node, "optional")  # ModifyInstanceMetadataOptions
    assert _imds(cluster, node)["v1"] == "200"
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
        # ssh may drop while the booting agent restarts sshd (exit 255): ask again
        rc_log, ran = vm_exec(cluster, node, "journalctl -b -u imagebake-agent -o cat | wc -l",
                              timeout=30, stderr=False)
        if rc == 0 and rc_log == 0 and int((ran.strip().splitlines() or ["0"])[-1]) > 0:
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


def test_ttl_node_powered_off_at_its_deadline_with_its_agent_stopped(cluster):
    """Last: the TTL node (agent stopped by the second test) powers off at the deadline."""
    node, deadline = cluster["ttl_node"]["host"], cluster["ttl_node"]["deadline"]
    pidfile = vm.paths(cluster, node)["pid"]
    while vm.read_pid(pidfile) is not None:
        assert time.time() < deadline + 90, f"{node} still running 90 s after its TTL"
        time.sleep(3)
    off = time.time()
    _record_result("ttl_node_power_off_after_deadline_seconds", round(off - deadline, 1))
    assert off >= deadline - 5, f"{node} powered off {deadline - off:.0f}s before its TTL"
    report = qemu_cluster.status(cluster)
    assert report["master"]["state"] == "running" and report["ready"]
