"""The cluster's pinned SSH host keys: what the master reported over the signed status
call, written as <state dir>/<name>.known_hosts for ssh's StrictHostKeyChecking=yes."""

from __future__ import annotations

from pathlib import Path

from ... import files, state
from .readiness import master_host_key, node_host_keys


def known_hosts_path(name: str) -> Path:
    return state.state_dir() / f"{state.check_name(name)}.known_hosts"


def remember(record: dict, reply: dict | None) -> None:
    """Pin the host keys the master reported (in the record and the known_hosts file)."""
    master_key = master_host_key(reply)
    if master_key:
        record["master_host_key"] = master_key
    nodes = node_host_keys(reply)
    if nodes:
        record["node_host_keys"] = {**record.get("node_host_keys", {}), **nodes}
    lines = []
    if record.get("master_host_key"):
        hosts = [h for h in (record["master"].get("public_ip"),
                             record["master"].get("private_ip")) if h]
        lines.append(f"{','.join(hosts)} {record['master_host_key']}")
    for address, key in sorted(record.get("node_host_keys", {}).items()):
        lines.append(f"{address} {key}")
    if lines:
        files.write_private(known_hosts_path(record["name"]), "\n".join(lines) + "\n")


def forget(name: str) -> None:
    known_hosts_path(name).unlink(missing_ok=True)
