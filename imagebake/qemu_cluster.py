"""QEMU target: a whole Disco cluster as virtual machines on one host.

Each VM boots from a copy-on-write overlay of its role's baked qcow2 with a
NoCloud seed whose user data is the cluster spec (the JSON EC2 user data
carries); cloud-init stores it where the first-boot agent reads it. The VMs
share a bridge inside a network namespace of their own (imagebake.qemu.netns):
no route out. The master has a second, restricted user-mode NIC whose only use
is two forwarded loopback ports (SSH and the Disco web UI). The launcher logs in
as the image's cloud-init default user (debian) with a per-cluster key given in
the seed's meta-data, pinning each VM's host key from its serial console.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import state
from .agent import spec as agent_spec
from .cluster_view import assemble, check_node, destroyed, forget, node_hostname
from .cluster_view import wait_ready as _wait
from .errors import ImagebakeError
from .qemu import kvm, netns, seed, vm
from .validate import parse_count

MAX_SLAVES = 16
DISCO_PORT = 8989
JOIN_PORT = 8990
SUBNET = ipaddress.ip_network("10.77.0.0/24")  # private to the cluster's namespace
MASTER_IP = str(SUBNET[2])
NODE_IP_BASE = 10
USER_NET_IP = "10.0.2.15"  # QEMU user networking's guest address (master's 2nd NIC)
LOGIN = "debian"  # cloud-init's default user on Debian 12 images
MEMORY_MIB = int(os.environ.get("IMAGEBAKE_VM_MEMORY", "512"))
READY_TIMEOUT_BASE = float(os.environ.get("IMAGEBAKE_VM_READY_TIMEOUT", "900"))
READY_TIMEOUT_PER_NODE = 60.0
HOSTKEY_RE = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) (AAAA[0-9A-Za-z+/=]+)",
                        re.M)


def vm_name(cluster: str, host: str) -> str:
    return f"imagebake-{cluster}-{host}"


def cluster_dir(name: str) -> Path:
    return state.state_dir() / "clusters" / f"{name}.d"


# ---------------------------------------------------------------- images
def image_paths() -> dict[str, str]:
    """The baked qcow2 per role from build/images.json (written by `invoke bake --target qemu`)."""
    from .bake import recorded_images

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
    kvm.qemu_binary()
    seed.iso_tool()
    for tool in ("ip", "qemu-img", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise ImagebakeError(f"{tool} not found: apt-get install iproute2 qemu-utils "
                                 "openssh-client")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- specs and seeds
def _node_spec(record: dict, host: str) -> dict:
    return agent_spec.make_spec(
        record["name"], "node", master_address=record["master_ip"],
        workers=record.get("workers_per_node"), hostname=host,
        token=record["token"], cookie=record["cookie"],
        disco_port=DISCO_PORT, join_port=JOIN_PORT,
    )


def _meta_data(record: dict, host: str) -> str:
    pub = (Path(record["dir"]) / "id_ed25519.pub").read_text().strip()
    return json.dumps({"instance-id": f"{vm_name(record['name'], host)}-{secrets.token_hex(4)}",
                       "local-hostname": host, "public-keys": [pub]}) + "\n"


def _network_config(vmrec: dict, master: bool) -> str:
    nics = [{"type": "physical", "name": "eth0", "mac_address": vmrec["mac"],
             "subnets": [{"type": "static", "address": f"{vmrec['ip']}/{SUBNET.prefixlen}"}]}]
    if master:
        nics.append({"type": "physical", "name": "eth1", "mac_address": vmrec["mac_user"],
                     "subnets": [{"type": "static", "address": f"{USER_NET_IP}/24"}]})
    return json.dumps({"version": 1, "config": nics}) + "\n"


# ---------------------------------------------------------------- VMs
def _paths(record: dict, host: str) -> dict[str, Path]:
    d = Path(record["dir"])
    return {"disk": d / f"{host}.qcow2", "seed": d / f"{host}-seed.iso",
            "pid": d / f"{host}.pid", "console": d / f"{host}.console.log",
            "monitor": d / f"{host}.monitor"}


def _start_vm(record: dict, host: str, spec: dict) -> None:
    role = spec["role"]
    vmrec = record["vms"][host]
    p = _paths(record, host)
    vm.make_overlay(Path(record["images"][role]), p["disk"])
    seed.make_iso(p["seed"], agent_spec.dumps(spec), _meta_data(record, host),
                  _network_config(vmrec, role == "master"))
    accel = kvm.Accel(record["accel"], record["accel_cpu"], "recorded at launch")
    nics = [f"tap,ifname={vmrec['tap']},script=no,downscript=no|{vmrec['mac']}"]
    if role == "master":
        ports = record["ports"]
        nics.append(f"user,restrict=on,net=10.0.2.0/24,"
                    f"hostfwd=tcp:127.0.0.1:{ports['ssh']}-{USER_NET_IP}:22,"
                    f"hostfwd=tcp:127.0.0.1:{ports['web']}-{USER_NET_IP}:{DISCO_PORT}"
                    f"|{vmrec['mac_user']}")
    netns.add_tap(vmrec["tap"])
    argv = vm.argv(vm_name(record["name"], host), p["disk"], p["seed"], accel, MEMORY_MIB, 1,
                   p["console"], nics, pidfile=p["pid"], monitor=p["monitor"], daemonize=True)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImagebakeError(f"QEMU for {host} failed: {proc.stderr.strip()[-400:]}")
    netns.attach(record["name"], vmrec["tap"])
    vmrec["started_at"] = time.time()


def _add_vm(record: dict, host: str, index: int) -> None:
    ip = MASTER_IP if host == "master" else str(SUBNET[NODE_IP_BASE + index])
    record["vms"][host] = {
        "index": index, "ip": ip, "tap": netns.tap_name(record["name"], index),
        "mac": f"52:54:00:4d:{index // 256:02x}:{index % 256:02x}",
        "mac_user": f"52:54:00:55:{index // 256:02x}:{index % 256:02x}",
    }


def _new_key(folder: Path) -> None:
    key = folder / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        f"imagebake-{folder.name}", "-f", str(key)], check=True)


def launch(name="imagebake", slaves=None, workers_per_node=None, wait=True, capture=None,
           **aws_only) -> dict:
    """Start a master and SLAVES nodes; CAPTURE (a path) records the bridge from the start."""
    given = sorted(k for k, v in aws_only.items() if v not in (None, False))
    if given:
        raise ImagebakeError(f"--{given[0].replace('_', '-')} applies only to --target aws")
    name = state.check_name(name)
    count = parse_count(2 if slaves is None else slaves, "--slaves", 1, MAX_SLAVES)
    workers = None if workers_per_node is None else parse_count(
        workers_per_node, "--workers-per-node", 1, 256)
    _require_host()
    if state.load(name) is not None or netns.exists(name):
        raise ImagebakeError(f"a cluster named {name!r} already exists: "
                             f"`invoke destroy --name {name}` or pick another --name")
    images = image_paths()
    accel = kvm.detect()
    master_spec = agent_spec.make_spec(
        name, "master", workers=workers, master_workers=0, expected_nodes=count,
        hostname="master", disco_port=DISCO_PORT, join_port=JOIN_PORT,
    )
    master_spec["master"]["address"] = MASTER_IP
    folder = cluster_dir(name)
    record = {
        "name": name, "target": "qemu", "netns": netns.ns_name(name), "subnet": str(SUBNET),
        "master_ip": MASTER_IP, "images": images, "accel": accel.name,
        "accel_cpu": accel.cpu, "accel_reason": accel.reason,
        "token": master_spec["token"], "cookie": master_spec["cookie"],
        "workers_per_node": workers, "nodes": [node_hostname(i) for i in range(1, count + 1)],
        "dir": str(folder), "ports": {"ssh": _free_port(), "web": _free_port()},
        "vms": {}, "login": LOGIN,
    }
    _add_vm(record, "master", 0)
    for i, host in enumerate(record["nodes"], start=1):
        _add_vm(record, host, i)
    state.save(record)  # first: `destroy` finds a half-finished launch
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _new_key(folder)
        netns.create(name)
        if capture:
            start_capture(record, Path(capture))
        started = time.time()
        _start_vm(record, "master", master_spec)
        _start_nodes(record, record["nodes"])
        record["started_at"] = started
        state.save(record)
    except BaseException:
        print("launch failed: removing what was created", flush=True)
        _remove_everything(name, record)
        raise
    if wait:
        record["ready_seconds"] = wait_ready(record, started)
        state.save(record)
    return record


def _start_nodes(record: dict, hosts: list[str]) -> None:
    def start(host: str) -> None:
        _start_vm(record, host, _node_spec(record, host))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(start, hosts))


def grow(record: dict, slaves=None) -> dict:
    count = parse_count(1 if slaves is None else slaves, "--slaves", 1, MAX_SLAVES)
    _require_host()
    have = len(record["nodes"])
    if have + count > MAX_SLAVES:
        raise ImagebakeError(f"a qemu cluster holds at most {MAX_SLAVES} slaves ({have} now)")
    if not _running(record, "master"):
        raise ImagebakeError(f"the master of {record['name']!r} is not running: cannot grow")
    new = [node_hostname(i) for i in range(have + 1, have + count + 1)]
    for i, host in enumerate(new, start=have + 1):
        _add_vm(record, host, i)
    record["nodes"] = record["nodes"] + new
    state.save(record)
    started = time.time()
    _start_nodes(record, new)
    state.save(record)
    record["ready_seconds"] = wait_ready(record, started)
    state.save(record)
    return record


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


# ---------------------------------------------------------------- ssh
def _alias(record: dict, host: str) -> str:
    return f"imagebake-{record['name']}-{host}"


def host_keys(record: dict, host: str) -> list[str]:
    """The VM's SSH host public keys, as cloud-init printed them on its serial console."""
    text = vm.console_text(_paths(record, host)["console"]).replace("\r", "")
    start = text.rfind("-----BEGIN SSH HOST KEY KEYS-----")
    end = text.find("-----END SSH HOST KEY KEYS-----", start)
    if start < 0 or end < 0:
        return []
    return [f"{m.group(1)} {m.group(2)}" for m in HOSTKEY_RE.finditer(text[start:end])]


def _known_hosts(record: dict) -> Path:
    """known_hosts with every VM's keys under its alias (rewritten as keys appear)."""
    path = Path(record["dir"]) / "known_hosts"
    lines = []
    for host in ["master", *record["nodes"]]:
        lines += [f"{_alias(record, host)} {key}" for key in host_keys(record, host)]
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def _ssh_opts(record: dict, host: str) -> list[str]:
    d = Path(record["dir"])
    return ["-i", str(d / "id_ed25519"), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={_known_hosts(record)}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            "-o", f"HostKeyAlias={_alias(record, host)}", "-o", "ConnectTimeout=10",
            "-o", "ServerAliveInterval=15", "-o", "LogLevel=ERROR",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={d}/cm-{host}",
            "-o", "ControlPersist=120"]


def ssh_base(record: dict, host: str = "master", batch: bool = True) -> list[str]:
    """ssh argv (without the remote command) reaching HOST as the login user."""
    argv = ["ssh", *_ssh_opts(record, host)]
    if batch:
        argv += ["-o", "BatchMode=yes"]
    if host == "master":
        return argv + ["-p", str(record["ports"]["ssh"]), f"{record['login']}@127.0.0.1"]
    jump = ["ssh", *_ssh_opts(record, "master"), "-o", "BatchMode=yes",
            "-p", str(record["ports"]["ssh"]), "-W", "%h:%p", f"{record['login']}@127.0.0.1"]
    return argv + ["-o", f"ProxyCommand={shlex.join(jump)}",
                   f"{record['login']}@{record['vms'][host]['ip']}"]


def vm_exec(record: dict, host: str, command: str, timeout: float = 60,
            stdin=None, stderr: bool = True) -> tuple[int, str]:
    """Run COMMAND (a shell line, as root via sudo) on HOST; (exit code, stdout+stderr),
    or only stdout when STDERR is false."""
    argv = ssh_base(record, host) + [f"sudo -n sh -c {shlex.quote(command)}"]
    try:
        proc = subprocess.run(argv, stdin=stdin, capture_output=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return 255, "timeout"
    out = proc.stdout + (proc.stderr if stderr else b"")
    return proc.returncode, out.decode("utf-8", "replace")


def master_exec(record: dict, command: str, user: str = "root",
                stdin=None) -> tuple[int, str]:
    """Run a shell command on the master (as USER); returns (exit code, output)."""
    if user != "root":
        command = f"su - {shlex.quote(user)} -c {shlex.quote(command)}"
    return vm_exec(record, "master", command, timeout=3600, stdin=stdin)


# ---------------------------------------------------------------- status
def _running(record: dict, host: str) -> bool:
    return vm.read_pid(_paths(record, host)["pid"]) is not None


def _json_or_none(text: str) -> dict | None:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


def _agent_status(record: dict, host: str) -> dict | None:
    if not host_keys(record, host):
        return None
    rc, out = vm_exec(record, host, "imagebake-agent status --json 2>/dev/null", timeout=30,
                      stderr=False)
    return _json_or_none(out) if rc == 0 else None


def _disco_config(record: dict) -> dict | None:
    rc, out = vm_exec(record, "master", f"cat /usr/var/disco/disco_{DISCO_PORT}.config",
                      timeout=30, stderr=False)
    return _json_or_none(out) if rc == 0 else None


def status(record: dict, per_node: bool = True) -> dict:
    name = record["name"]
    states = {h: "running" if _running(record, h) else "stopped"
              for h in ["master", *record["nodes"]]}
    master_state = _agent_status(record, "master") if states["master"] == "running" else None
    report = assemble(
        record, states, master_state,
        config=_disco_config(record) if master_state else None,
        agent_status=(lambda h: _agent_status(record, h)) if per_node and master_state else None,
        node_fields=lambda h: {"vm": vm_name(name, h), "address": record["vms"][h]["ip"]},
        master_fields={"vm": vm_name(name, "master"), "web_ui": _web_ui(record)},
    )
    report["accel"] = record.get("accel")
    return report


def wait_ready(record: dict, started: float) -> float:
    """Poll the master until every running node joined; returns seconds to ready."""
    return _wait(
        record, started, lambda r: status(r, per_node=False),
        timeout=READY_TIMEOUT_BASE + READY_TIMEOUT_PER_NODE * len(record["nodes"]), poll=3,
        master_down=lambda report: (
            f"the master VM stopped: see {_paths(record, 'master')['console']}"),
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
            stopped += vm.stop(_paths(record, host)["pid"])
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
    return removed + forget(name, cluster_dir(name), "overlays, seeds and keys")


def destroy(name: str, record: dict | None = None) -> str:
    name = state.check_name(name)
    record = record or state.load(name)
    removed = _remove_everything(name, record)
    return destroyed(name, removed, "qemu")


def ssh_argv(record: dict, node: str | None = None) -> list[str]:
    host = check_node(record, node)
    return ssh_base(record, host, batch=False) + ["-t", "sudo", "-iu", "disco"]


def tunnel(record: dict) -> str:
    url = _web_ui(record)
    if not url:
        raise ImagebakeError(f"the master of {record['name']!r} is not running")
    return f"Disco web UI: {url} (forwarded to the master VM; nothing else listens)"


def summary(record: dict) -> str:
    lines = [
        f"cluster {record['name']} (qemu, {record['accel']}): master {record['master_ip']}, "
        f"{len(record['nodes'])} slaves ({', '.join(record['nodes'])}) "
        f"in network namespace {record['netns']}",
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
