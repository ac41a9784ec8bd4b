"""QEMU target: the EC2 boot path, rehearsed in local virtual machines.

Each VM boots from a copy-on-write overlay of its role's baked qcow2 and presents
itself as an EC2 instance (ec2.py: SMBIOS fields, an instance id). Nothing is written
into it by the launcher: cloud-init's ds-identify picks the Ec2 datasource, cloud-init
takes the network (DHCP), the login key and the user data from the metadata service,
and the agent finds its spec where it does on EC2. The user data is what the AWS
launcher renders (imagebake.targets.aws.userdata: master_spec/node_spec/render), so the
master learns its own address on the machine (IMDS local-ipv4), as on EC2.

The EC2 fabric (imds.py: metadata service at 169.254.169.254, the VPC's DHCP, the
master's forwarded "public" ports) runs as one process per cluster inside the cluster's
network namespace, which has no route out. Readiness and the host keys that `ssh`
pins come from the master agent's signed status call, as for the AWS target.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ... import durations, ports, state
from ...agent_client import AgentClient
from ...clients import qemu as qemu_client
from ...errors import ImagebakeError
from ...validate import parse_count
from ..aws import userdata as aws_userdata
from ..base import Member, Target
from ..local_status import assemble, destroyed, forget
from ..local_status import wait_ready as _wait
from . import ec2, netns, vm
from .ssh import host_keys, pin, ssh_base, vm_exec
from .vm import cluster_dir, vm_name

MAX_SLAVES = 16
SUBNET = ipaddress.ip_network("10.77.0.0/24")  # private to the cluster's namespace
GATEWAY_IP = str(SUBNET[1])  # the emulated fabric's address on the bridge (VPC router)
MASTER_IP = str(SUBNET[2])
NODE_IP_BASE = 10
LOGIN = "debian"  # cloud-init's default user on Debian 12 images
MEMORY_MIB = int(os.environ.get("IMAGEBAKE_VM_MEMORY", "512"))
READY_TIMEOUT_BASE = float(os.environ.get("IMAGEBAKE_VM_READY_TIMEOUT", "900"))
READY_TIMEOUT_PER_NODE = 60.0

# ---------------------------------------------------------------- images
def image_paths() -> dict[str, str]:
    """The baked qcow2 per role from build/images.json (written by `invoke bake --target qemu`)."""
    from ...bake.records import recorded_images

    recorded = recorded_images("qemu")
    paths = {}
    for role in ("master", "node"):
        path = (recorded.get(role) or {}).get("id")
        override = os.environ.get(f"IMAGEBAKE_QEMU_{role.upper()}_IMAGE")
        path = override or path
        if not path or not Path(path).is_file():
            raise ImagebakeError(f"no baked qemu {role} image ({path or 'none recorded'}): "
                                 "run `invoke bake --target qemu` first")
        paths[role] = str(Path(path).resolve())
    return paths


def _require_host() -> None:
    if os.geteuid() != 0:
        raise ImagebakeError("the qemu target needs root (network namespaces and tap devices)")
    qemu_client.qemu_binary()
    for tool in ("ip", "qemu-img", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise ImagebakeError(f"{tool} not found: apt-get install iproute2 qemu-utils "
                                 "openssh-client")


# ---------------------------------------------------------------- user data
def _aws_view(record: dict) -> dict:
    """What aws/userdata.node_spec reads from an AWS record, from ours."""
    return {"name": record["name"], "master": {"private_ip": record["master_ip"]},
            "workers_per_node": record.get("workers_per_node"),
            "ttl_deadline": record.get("ttl_deadline"),
            "token": record["token"], "cookie": record["cookie"]}


def node_user_data(record: dict, ttl_deadline: int | None = None) -> str:
    """A node's user data: the AWS launcher's node_spec + render, byte for byte."""
    view = _aws_view(record)
    if ttl_deadline is not None:
        view["ttl_deadline"] = ttl_deadline
    return aws_userdata.render(aws_userdata.node_spec(view))


# ---------------------------------------------------------------- VMs
def _start_vm(record: dict, host: str) -> None:
    vmrec = record["vms"][host]
    p = vm.paths(record, host)
    vm.make_overlay(Path(record["images"][vmrec["role"]]), p["disk"])
    accel = qemu_client.Accel(record["accel"], record["accel_cpu"], "recorded at launch")
    nics = [f"tap,ifname={vmrec['tap']},script=no,downscript=no|{vmrec['mac']}"]
    netns.add_tap(vmrec["tap"])
    argv = vm.argv(vm_name(record["name"], host), p["disk"], None, accel, MEMORY_MIB, 1,
                   p["console"], nics, pidfile=p["pid"], monitor=p["monitor"], daemonize=True,
                   extra=ec2.smbios_argv(vmrec))
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImagebakeError(f"QEMU for {host} failed: {proc.stderr.strip()[-400:]}")
    netns.attach(record["name"], vmrec["tap"])
    vmrec["started_at"] = time.time()


def _add_vm(record: dict, index: int, user_data: str, http_tokens: str) -> str:
    """Reserve VM number INDEX (0: the master) as an instance; returns its host name."""
    ip = MASTER_IP if index == 0 else str(SUBNET[NODE_IP_BASE + index])
    host = "master" if index == 0 else ec2.ec2_hostname(ip)
    record["vms"][host] = {
        "index": index, "ip": ip, "role": "master" if index == 0 else "node",
        "tap": netns.tap_name(record["name"], index),
        "mac": f"52:54:00:4d:{index // 256:02x}:{index % 256:02x}",
    }
    ec2.new_instance(record["vms"][host], user_data, http_tokens)
    return host


def _new_key(folder: Path) -> None:
    key = folder / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        f"imagebake-{folder.name}", "-f", str(key)], check=True)


def _start_nodes(record: dict, hosts: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda h: _start_vm(record, h), hosts))


# ---------------------------------------------------------------- capture
def start_capture(record: dict, pcap: Path) -> None:
    """tcpdump on the cluster bridge from now on (stopped by stop_capture or destroy)."""
    pcap.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(netns.capture_argv(record["name"], pcap),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    record["capture"] = {"pid": proc.pid, "pcap": str(pcap)}
    time.sleep(1.0)  # tcpdump opens the bridge before the first VM starts


def stop_capture(record: dict) -> str | None:
    cap = record.pop("capture", None)
    if not cap:
        return None
    try:
        cmdline = Path(f"/proc/{cap['pid']}/cmdline").read_bytes()
        if b"tcpdump" in cmdline and cap["pcap"].encode() in cmdline:
            os.kill(cap["pid"], 15)
            for _ in range(50):
                if not Path(f"/proc/{cap['pid']}").exists():
                    break
                time.sleep(0.1)
    except (OSError, ProcessLookupError):
        pass
    state.save(record)
    return cap["pcap"]


# ---------------------------------------------------------------- status
def _running(record: dict, host: str) -> bool:
    return vm.read_pid(vm.paths(record, host)["pid"]) is not None


def _json_or_none(text: str) -> dict | None:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


def _agent_status(record: dict, host: str) -> dict | None:
    """A node's own agent report (over SSH, once its host key is pinned)."""
    if not host_keys(record, host):
        return None
    rc, out = vm_exec(record, host, "imagebake-agent status --json 2>/dev/null", timeout=30,
                      stderr=False)
    return _json_or_none(out) if rc == 0 else None


def master_status(record: dict, agent: AgentClient | None = None) -> dict | None:
    """The master agent's verified status reply over its forwarded join port (signed both
    ways with the cluster token, as the AWS launcher asks); host keys pinned from it in
    the known_hosts file (ssh.pin: the record is only read)."""
    reply = (agent or AgentClient()).status("127.0.0.1", record["ports"]["join"], record)
    if reply is not None:
        pin(record, reply)
    return reply


def _disco_config(record: dict) -> dict | None:
    rc, out = vm_exec(record, "master", f"cat /usr/var/disco/disco_{ports.DISCO}.config",
                      timeout=30, stderr=False)
    return _json_or_none(out) if rc == 0 else None


def status(record: dict, per_node: bool = True, agent: AgentClient | None = None) -> dict:
    name = record["name"]
    states = {h: "running" if _running(record, h) else "stopped"
              for h in ["master", *state.node_names(record)]}
    master_state = master_status(record, agent) if states["master"] == "running" else None
    report = assemble(
        record, states, master_state,
        config=_disco_config(record) if master_state else None,
        agent_status=(lambda h: _agent_status(record, h)) if per_node and master_state else None,
        node_fields=lambda h: {"vm": vm_name(name, h), "address": record["vms"][h]["ip"]},
        master_fields={"vm": vm_name(name, "master"), "web_ui": _web_ui(record)},
        signed=True,
    )
    report["accel"] = record.get("accel")
    return report


def wait_ready(record: dict, started: float, agent: AgentClient | None = None) -> float:
    """Poll the master until every running node joined; returns seconds to ready."""
    return _wait(
        record, started, lambda r: status(r, per_node=False, agent=agent),
        timeout=READY_TIMEOUT_BASE + READY_TIMEOUT_PER_NODE * len(record["nodes"]), poll=3,
        master_down=lambda report: (
            f"the master VM stopped: see {vm.paths(record, 'master')['console']}"),
        hint=f"; consoles in {record['dir']}")


def _web_ui(record: dict) -> str | None:
    return f"http://127.0.0.1:{record['ports']['web']}/" if _running(record, "master") else None


# ---------------------------------------------------------------- reboot (tests, operators)
def reboot(record: dict, host: str) -> None:
    """Reboot HOST from inside (the agent must bring it back into the cluster)."""
    vm_exec(record, host, "systemctl reboot || reboot", timeout=30)
    for f in Path(record["dir"]).glob(f"cm-{host}*"):
        f.unlink(missing_ok=True)


# ---------------------------------------------------------------- destroy & access
def _our_qemu_pids(name: str) -> list[int]:
    """QEMU processes whose -name is one of this cluster's VMs (a record may be gone)."""
    prefix = f"{vm_name(name, '')}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and b"qemu-system" in args[0] and b"-name" in args:
            value = args[args.index(b"-name") + 1]
            if value.startswith(prefix) and b"-" not in value[len(prefix):]:
                pids.append(int(proc.name))
    return pids


def _remove_everything(name: str, record: dict | None) -> list[str]:
    removed = []
    stopped = 0
    if record:
        if stop_capture(record) if state.load(name) else record.pop("capture", None):
            removed.append("capture")
        for host in record.get("vms", {}):
            stopped += vm.stop(vm.paths(record, host)["pid"])
        if ec2.stop(record):
            removed.append("EC2 metadata emulator")
    for pid in _our_qemu_pids(name):
        try:
            os.kill(pid, 9)
            stopped += 1
        except ProcessLookupError:
            pass
    if stopped:
        removed.append(f"{stopped} VMs")
    if netns.delete(name):
        removed.append("network namespace")
    for tap in netns.leftover_taps(name):
        subprocess.run(["ip", "link", "del", tap], capture_output=True, check=False)
    return removed + forget(name, cluster_dir(name), "overlays, keys and the emulator's files")


# ---------------------------------------------------------------- the target
class QemuRecord(state.Record, total=False):
    netns: str             # the cluster's network namespace (no route out)
    subnet: str
    master_ip: str
    images: dict[str, str]  # role -> baked qcow2
    ami_ids: dict[str, str]
    accel: str
    accel_cpu: str
    accel_reason: str
    dir: str               # overlays, keys, consoles, the emulator's files
    ports: dict[str, int]  # ssh, web, join: forwarded to the host's 127.0.0.1
    vms: dict[str, dict]   # host -> index, ip, role, tap, mac, instance fields
    login: str
    started_at: float
    ready_seconds: float
    capture: dict


@dataclass
class LaunchPlan:
    name: str
    count: int
    workers: int | None
    images: dict[str, str]
    capture: str | None
    http_tokens: str
    ttl_deadline: int | None
    idle_stop: int | None = None


class QemuTarget(Target):
    """A whole cluster as VMs on one host, in a network namespace with no route out."""

    name = "qemu"
    # http_tokens: the instances' HttpTokens, required (default) or optional;
    # ttl: as for aws (90m, 4h: the deadline goes into the user data)
    launch_options = ("http_tokens", "ttl", "idle_stop")
    default_slaves = 2

    def __init__(self, agent: AgentClient | None = None, capture: str | None = None) -> None:
        super().__init__(agent)
        self.capture = capture  # a pcap path: tcpdump on the bridge from the start (tests)

    def _check_launch(self, name: str, slaves: Any, workers_per_node: Any,
                      options: dict[str, Any]) -> LaunchPlan:
        count = parse_count(self.default_slaves if slaves is None else slaves, "--slaves", 1,
                            MAX_SLAVES)
        workers = None if workers_per_node is None else parse_count(
            workers_per_node, "--workers-per-node", 1, 256)
        _require_host()
        if state.load(name) is not None or netns.exists(name):
            raise ImagebakeError(f"a cluster named {name!r} already exists: "
                                 f"`invoke destroy --name {name}` or pick another --name")
        tokens = options.get("http_tokens") or "required"
        if tokens not in ec2.HTTP_TOKENS:
            raise ImagebakeError(f"--http-tokens must be required or optional, not {tokens!r}")
        ttl_s = durations.ttl_seconds(options.get("ttl"))
        deadline = int(time.time()) + ttl_s if ttl_s else None
        idle_s = durations.idle_stop_seconds(options.get("idle_stop"))
        return LaunchPlan(name, count, workers, image_paths(), self.capture, tokens, deadline,
                          idle_s)

    def _launch(self, plan: LaunchPlan, wait: bool) -> dict:
        name, count, workers = plan.name, plan.count, plan.workers
        accel = qemu_client.detect()
        master_spec = aws_userdata.master_spec(name, count, workers, plan.ttl_deadline,
                                               idle_stop=plan.idle_stop)
        folder = cluster_dir(name)
        record: QemuRecord = {
            "name": name, "target": "qemu", "netns": netns.ns_name(name),
            "subnet": str(SUBNET), "master_ip": MASTER_IP, "images": plan.images,
            "ami_ids": {r: f"ami-0{hashlib.sha256(p.encode()).hexdigest()[:16]}"
                        for r, p in plan.images.items()},
            "accel": accel.name, "accel_cpu": accel.cpu, "accel_reason": accel.reason,
            "token": master_spec["token"], "cookie": master_spec["cookie"],
            "launcher_key": master_spec["launcher_key"],
            "workers_per_node": workers, "ttl_deadline": plan.ttl_deadline,
            "idle_stop": plan.idle_stop,
            "nodes": [], "dir": str(folder), "ports": {}, "vms": {}, "login": LOGIN,
        }
        _add_vm(record, 0, aws_userdata.render(master_spec), plan.http_tokens)
        record["nodes"] = [state.node(_add_vm(record, i, node_user_data(record), plan.http_tokens))
                           for i in range(1, count + 1)]
        state.save(record)  # first: `destroy` finds a half-finished launch
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            _new_key(folder)
            netns.create(name)
            if plan.capture:
                start_capture(record, Path(plan.capture))
            ec2.start(record, GATEWAY_IP, SUBNET.prefixlen, {
                "ssh": (MASTER_IP, 22), "web": (MASTER_IP, ports.DISCO),
                "join": (MASTER_IP, ports.AGENT)})
            started = time.time()
            _start_vm(record, "master")
            _start_nodes(record, state.node_names(record))
            record["started_at"] = started
            state.save(record)
        except BaseException:
            print("launch failed: removing what was created", flush=True)
            _remove_everything(name, record)
            raise
        if wait:
            record["ready_seconds"] = wait_ready(record, started, self.agent)
            state.save(record)
        return record

    def _check_grow(self, record: dict, slaves: Any) -> int:
        count = parse_count(1 if slaves is None else slaves, "--slaves", 1, MAX_SLAVES)
        _require_host()
        have = len(record["nodes"])
        if have + count > MAX_SLAVES:
            raise ImagebakeError(f"a qemu cluster holds at most {MAX_SLAVES} slaves ({have} now)")
        if not _running(record, "master"):
            raise ImagebakeError(f"the master of {record['name']!r} is not running: cannot grow")
        return count

    def _grow(self, record: dict, count: int, http_tokens: str | None = None,
              ttl_deadline: int | None = None, wait: bool = True) -> dict:
        """COUNT more nodes (RunInstances with the node user data); HTTP_TOKENS and
        TTL_DEADLINE override the launch's for these instances only (tests)."""
        have = max(v["index"] for v in record["vms"].values())
        tokens = http_tokens or record["vms"]["master"]["http_tokens"]
        new = [_add_vm(record, i, node_user_data(record, ttl_deadline), tokens)
               for i in range(have + 1, have + count + 1)]
        record["nodes"] = record["nodes"] + [state.node(n) for n in new]
        state.save(record)
        ec2.reload(record)
        started = time.time()
        _start_nodes(record, new)
        state.save(record)
        if wait:
            record["ready_seconds"] = wait_ready(record, started, self.agent)
            state.save(record)
        return record

    def image_kind(self) -> Any:
        from .images import KIND

        return KIND

    def build_base_image(self) -> str:
        from .images import build_base

        return build_base()

    def remove_members(self, record: dict, chosen: list[Member]) -> str:
        stopped = []
        for m in chosen:
            try:
                vm_exec(record, m.label, "poweroff", timeout=30)
            except Exception:  # noqa: BLE001 - a VM already gone is what we want
                pass
            stopped.append(m.label)
        return f"stopped {len(stopped)} VM(s)"

    def _destroy(self, name: str, record: dict | None) -> str:
        record = record or state.load(name)
        return destroyed(name, _remove_everything(name, record), "qemu")

    def _ssh_argv(self, record: dict, host: str, command: list[str]) -> list[str]:
        # the remote shell splits the words again, as with `ssh host COMMAND`
        return ssh_base(record, host, batch=False) + ["-t", "sudo", "-iu", "disco", *command]

    def exec(self, record: dict, command: str, user: str = "root",
             stdin: BinaryIO | None = None) -> tuple[int, str]:
        """Run a shell command on the master (as USER); returns (exit code, output)."""
        if user != "root":
            command = f"su - {shlex.quote(user)} -c {shlex.quote(command)}"
        return vm_exec(record, "master", command, timeout=3600, stdin=stdin)

    def exec_argv(self, record: dict, command: str, user: str = "root") -> list[str]:
        if user != "root":
            command = f"su - {shlex.quote(user)} -c {shlex.quote(command)}"
        return ssh_base(record, "master") + [f"sudo -n sh -c {shlex.quote(command)}"]

    def status(self, record: dict) -> dict:
        return status(record, agent=self.agent)

    def agent_endpoint(self, record: dict) -> tuple[str, int] | None:
        """The master agent's join port, forwarded by the emulated EC2 fabric."""
        port = (record.get("ports") or {}).get("join")
        return ("127.0.0.1", port) if port else None

    def tunnel(self, record: dict) -> str:
        url = _web_ui(record)
        if not url:
            raise ImagebakeError(f"the master of {record['name']!r} is not running")
        return (f"Disco web UI: {url} (the master's port {ports.DISCO}, forwarded by the "
                "cluster's emulated EC2 fabric; nothing else listens)")

    def summary(self, record: dict) -> str:
        lines = [
            f"cluster {record['name']} (qemu, {record['accel']}): master "
            f"{record['master_ip']}, {len(record['nodes'])} slaves "
            f"({', '.join(state.node_names(record))}) in network namespace {record['netns']}; "
            f"emulated EC2 metadata service, HttpTokens="
            f"{record['vms']['master']['http_tokens']}",
            f"ssh: invoke ssh --name {record['name']} (127.0.0.1:{record['ports']['ssh']})",
        ]
        url = _web_ui(record)
        if url:
            lines.append(f"web UI: {url}")
        if record.get("ready_seconds") is not None:
            lines.append(f"ready {record['ready_seconds']}s after the VMs started")
        else:
            lines.append("not waited for: `invoke status` tells when it is ready")
        return "\n".join(lines)


TARGET_CLASS = QemuTarget
