"""Reaching the qemu cluster's VMs over SSH: the master through its forwarded port on the
host's 127.0.0.1 (its "public address"), nodes through the master (ProxyCommand), as the
image's login user with the cluster's key pair (served as the instance's public-keys).

Host keys are pinned as the AWS target pins them: from the master agent's signed status
reply (imagebake.agent_client), the master's under its forwarded address and
private address, each node's only under the private address the launcher gave that VM.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from ... import files
from ...agent_client import master_host_key, node_host_keys


def known_hosts_path(record: dict) -> Path:
    return Path(record["dir"]) / "known_hosts"


def pinned(record: dict) -> dict[str, str]:
    """address -> host key, for every address the cluster's known_hosts file pins (the
    one store of pinned keys: the record holds none)."""
    return files.read_known_hosts(known_hosts_path(record))


def pin(record: dict, reply: dict | None) -> None:
    """Pin the host keys of a verified status REPLY in the known_hosts file (never the
    record, which `status` only reads): keys pinned before stay, a node's only under the
    private address the launcher gave one of the cluster's VMs."""
    have = pinned(record)
    key = master_host_key(reply) or have.get(record["master_ip"])
    ours = {v["ip"] for h, v in record["vms"].items() if h != "master"}
    nodes = {a: k for a, k in have.items() if a in ours}
    nodes.update({a: k for a, k in node_host_keys(reply).items() if a in ours})
    lines = []
    if key:
        lines.append(f"[127.0.0.1]:{record['ports']['ssh']},{record['master_ip']} {key}")
    for address, node_key in sorted(nodes.items()):
        lines.append(f"{address} {node_key}")
    text = "\n".join(lines) + "\n"
    path = known_hosts_path(record)
    if files.read_private(path) != text:
        files.write_private(path, text)


def host_keys(record: dict, host: str) -> list[str]:
    """HOST's pinned host key(s) ([] until the master reported it)."""
    address = record["master_ip"] if host == "master" else record["vms"][host]["ip"]
    key = pinned(record).get(address)
    return [key] if key else []


def _ssh_opts(record: dict, host: str) -> list[str]:
    d = Path(record["dir"])
    return ["-i", str(d / "id_ed25519"), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts_path(record)}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=10",
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
