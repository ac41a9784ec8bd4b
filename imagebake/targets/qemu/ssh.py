"""Reaching the qemu cluster's VMs over SSH: the master through its forwarded loopback
port, nodes through the master (ProxyCommand), host keys pinned from each VM's serial
console (cloud-init prints them there), as the image's login user with the per-cluster key.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from . import vm

HOSTKEY_RE = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) (AAAA[0-9A-Za-z+/=]+)",
                        re.M)


def _alias(record: dict, host: str) -> str:
    return f"imagebake-{record['name']}-{host}"


def host_keys(record: dict, host: str) -> list[str]:
    """The VM's SSH host public keys, as cloud-init printed them on its serial console."""
    text = vm.console_text(vm.paths(record, host)["console"]).replace("\r", "")
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
