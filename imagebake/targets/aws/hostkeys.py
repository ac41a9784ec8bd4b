"""The cluster's pinned SSH host keys: what the master reported over the signed status
call, under the addresses EC2 reports for the instances, written as
<state dir>/<name>.known_hosts for ssh's StrictHostKeyChecking=yes."""

from __future__ import annotations

from pathlib import Path

from ... import files, state
from ...agent_client import master_host_key, node_host_keys


def known_hosts_path(name: str) -> Path:
    return state.state_dir() / f"{state.check_name(name)}.known_hosts"


def ec2_addresses(record: dict, found: dict[str, dict] | None = None
                  ) -> tuple[list[str], set[str]]:
    """(the master's public and private address, the nodes' private addresses) as EC2
    reports them: FOUND (instance id -> instances.brief(), from DescribeInstances) when
    given, else the record's entries (RunInstances and DescribeInstances answers)."""
    def view(entry: dict) -> dict | None:
        return entry if found is None else found.get(entry.get("id"))

    master = view(record.get("master") or {}) or {}
    master_hosts = [h for h in (master.get("public_ip"), master.get("private_ip")) if h]
    nodes = set()
    for entry in record.get("nodes", []):
        info = view(entry)
        if info and info.get("private_ip"):
            nodes.add(info["private_ip"])
    return master_hosts, nodes - set(master_hosts)


def remember(record: dict, reply: dict | None, found: dict[str, dict] | None = None) -> None:
    """Pin the host keys the master reported (in the record and the known_hosts file):
    the master's under its own EC2 addresses, each node's only under the private address
    EC2 reports for one of the cluster's instances (never an address a reply claims)."""
    master_hosts, node_addresses = ec2_addresses(record, found)
    master_key = master_host_key(reply)
    if master_key:
        record["master_host_key"] = master_key
    old = {a: k for a, k in record.get("node_host_keys", {}).items() if a in node_addresses}
    record["node_host_keys"] = {**old, **node_host_keys(reply, node_addresses)}
    lines = []
    if record.get("master_host_key") and master_hosts:
        lines.append(f"{','.join(master_hosts)} {record['master_host_key']}")
    for address, key in sorted(record["node_host_keys"].items()):
        lines.append(f"{address} {key}")
    if lines:
        files.write_private(known_hosts_path(record["name"]), "\n".join(lines) + "\n")


def forget(name: str) -> None:
    known_hosts_path(name).unlink(missing_ok=True)
