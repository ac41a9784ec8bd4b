"""The cluster's pinned SSH host keys: what the master reported over the signed status
call, under the addresses EC2 reports for the instances, written as
<state dir>/<name>.known_hosts for ssh's StrictHostKeyChecking=yes.

That file is the one store of pinned keys (the record holds none): the launch pins as it
waits for the agents, and `invoke status`, which only reads the record, pins what a later
reply adds (a grown slave) into the file alone."""

from __future__ import annotations

from pathlib import Path

from ... import files, state
from ...agent_client import master_host_key, node_host_keys


def known_hosts_path(name: str) -> Path:
    return state.state_dir() / f"{state.check_name(name)}.known_hosts"


def pinned(name: str) -> dict[str, str]:
    """address -> host key, for every address the cluster's known_hosts file pins."""
    return files.read_known_hosts(known_hosts_path(name))


def master_key(record: dict) -> str | None:
    """The master's pinned host key (under one of its addresses in the record), or None."""
    master = record.get("master") or {}
    pins = pinned(record["name"])
    return next((pins[a] for a in (master.get("public_ip"), master.get("private_ip"))
                 if a and a in pins), None)


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
    """Pin the host keys the master reported in the known_hosts file (never the record):
    the master's under its own EC2 addresses, each node's only under the private address
    EC2 reports for one of the cluster's node instances (never an address a reply claims).
    Keys pinned before stay while their address is still one of the cluster's."""
    master_hosts, node_addresses = ec2_addresses(record, found)
    have = pinned(record["name"])
    key = master_host_key(reply) or next((have[h] for h in master_hosts if h in have), None)
    nodes = {a: k for a, k in have.items() if a in node_addresses}
    nodes.update(node_host_keys(reply, node_addresses))
    lines = []
    if key and master_hosts:
        lines.append(f"{','.join(master_hosts)} {key}")
    for address, node_key in sorted(nodes.items()):
        lines.append(f"{address} {node_key}")
    text = "\n".join(lines) + "\n"
    path = known_hosts_path(record["name"])
    if lines and files.read_private(path) != text:
        files.write_private(path, text)


def forget(name: str) -> None:
    known_hosts_path(name).unlink(missing_ok=True)
