"""Run commands inside the cluster's VMs (over the launcher's pinned SSH)."""

from __future__ import annotations

import hashlib
import json

from imagebake.targets.qemu import ssh as qemu_ssh

DISCO_CONFIG = "/usr/var/disco/disco_8989.config"
WATCHED = ("/home/disco/.ssh/known_hosts", "/home/disco/.ssh/authorized_keys",
           "/home/disco/.erlang.cookie", "/etc/imagebake/hosts", DISCO_CONFIG)


def sh(record: dict, host: str, command: str, user: str = "root", check: bool = True) -> str:
    if user != "root":
        command = f"su - {user} -c {json.dumps(command)}"
    rc, out = qemu_ssh.vm_exec(record, host, command, timeout=180, stderr=False)
    if check and rc != 0:
        raise AssertionError(f"{host}: {command!r} exited {rc}: {out}")
    return out


def read(record: dict, host: str, path: str) -> str:
    return sh(record, host, f"cat {path} 2>/dev/null || true")


def lines_of(record: dict, host: str, path: str) -> list[str]:
    return [ln for ln in read(record, host, path).splitlines() if ln.strip()]


def fingerprint(record: dict, host: str) -> dict[str, str]:
    return {p: hashlib.sha256(read(record, host, p).encode()).hexdigest() for p in WATCHED}
