"""Small helpers to look inside the cluster's containers."""

from __future__ import annotations

import hashlib
import json
import subprocess

from imagebake import state
from imagebake.targets.docker.cluster import container_name

DISCO_CONFIG = "/usr/var/disco/disco_8989.config"
WATCHED = ("/home/disco/.ssh/known_hosts", "/home/disco/.ssh/authorized_keys",
           "/home/disco/.erlang.cookie", "/etc/imagebake/hosts", DISCO_CONFIG)


def sh(record: dict, host: str, command: str, user: str = "root",
       check: bool = True) -> subprocess.CompletedProcess:
    argv = ["docker", "exec", container_name(record["name"], host)]
    argv += ["sh", "-c", command] if user == "root" else ["su", "-", user, "-c", command]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{host}: {command!r} exited {proc.returncode}: "
                             f"{proc.stdout}{proc.stderr}")
    return proc


def read(record: dict, host: str, path: str) -> str:
    return sh(record, host, f"cat {path} 2>/dev/null || true").stdout


def disco_config(record: dict) -> dict:
    return json.loads(read(record, "master", DISCO_CONFIG))


def fingerprint(record: dict, host: str) -> dict[str, str]:
    """sha256 of every file the agent writes, to prove something did not change."""
    return {p: hashlib.sha256(read(record, host, p).encode()).hexdigest() for p in WATCHED}


def temp_files(record: dict, hosts: list[str] | None = None) -> dict[str, list[str]]:
    """Everything under /tmp and /var/tmp on HOSTS (default: the master and every slave),
    to prove a command left no temporary file there."""
    return {host: sorted(sh(record, host, "find /tmp /var/tmp -mindepth 1 2>/dev/null || true")
                         .stdout.split())
            for host in hosts or ["master", *state.node_names(record)]}
