"""Reaching the EC2 cluster over SSH with the pinned host keys (hostkeys.py): the master
by its public address, a node through the master, the web UI through a tunnel."""

from __future__ import annotations

import shlex
import subprocess
from typing import BinaryIO

from ... import ports
from ...clients import aws
from ...errors import ImagebakeError
from .hostkeys import known_hosts_path, master_key, pinned

SSH_USER = "ubuntu"
AS_DISCO = ["sudo", "-n", "-iu", "disco"]  # run/copy act as disco, as on docker and qemu


def base_argv(record: dict) -> list[str]:
    path = known_hosts_path(record["name"])
    if not master_key(record):
        raise ImagebakeError(
            f"the master's host key is not known yet: wait until "
            f"`invoke status --name {record['name']}` says READY, then retry")
    argv = ["ssh", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={path}"]
    if record.get("identity_file"):  # a key made for this cluster (`invoke acceptance`)
        argv += ["-i", record["identity_file"], "-o", "IdentitiesOnly=yes"]
    return argv


def master_target(record: dict) -> str:
    master = record.get("master") or {}
    address = master.get("public_ip")
    if not address:
        raise ImagebakeError(f"the master of {record['name']!r} has no public address")
    return f"{SSH_USER}@{address}"


def find_node(record: dict, node: str | None) -> dict | None:
    """The node entry NODE names (its name node02, also written node2 or 2, an instance id
    or a private address); None for the master; a one-line error when no node matches."""
    if node in (None, "", "master"):
        return None
    nodes = record.get("nodes", [])
    number = node[4:] if node.startswith("node") else node
    name = f"node{int(number):02d}" if number.isdigit() else node
    entry = next((n for n in nodes if name == n["name"] or node in (n["id"],
                                                                    n.get("private_ip"))),
                 None)
    if entry is None:
        raise ImagebakeError(
            f"no node {node!r} in {record['name']!r}: pass a name "
            f"({', '.join(n['name'] for n in nodes) or 'none'}), an instance id or a "
            "private address")
    if entry.get("private_ip") not in pinned(record["name"]):
        raise ImagebakeError(
            f"the host key of node {node} is not known: wait until `invoke status --name "
            f"{record['name']}` says READY, then retry")
    return entry


def argv(record: dict, node: str | None, command: list[str]) -> list[str]:
    """ssh to the master (or, through it, to a node) with the pinned host keys."""
    base = base_argv(record)
    target = master_target(record)
    entry = find_node(record, node)
    if entry is None:
        return [*base, target, *command]
    jump = shlex.join([*base, "-W", "%h:%p", target])
    return [*base, "-o", f"ProxyCommand={jump}", f"{SSH_USER}@{entry['private_ip']}",
            *command]


def tunnel(record: dict) -> str:
    """Forward localhost:8989 to the master's Disco web UI (ssh in the background)."""
    command = [*base_argv(record), "-f", "-N", "-o", "ExitOnForwardFailure=yes",
               "-L", f"{ports.DISCO}:localhost:{ports.DISCO}",
               master_target(record)]
    try:
        result = subprocess.run(command, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImagebakeError(f"ssh tunnel failed: {aws.one_line(exc)}") from None
    if result.returncode != 0:
        raise ImagebakeError(
            f"ssh tunnel failed (exit {result.returncode}): is local port "
            f"{ports.DISCO} free and your key loaded (ssh-add)?")
    return f"http://localhost:{ports.DISCO}/"


def master_exec_argv(record: dict, command: str, user: str = "root") -> list[str]:
    """ssh argv (pinned host key, no terminal) running COMMAND on the master as USER."""
    remote = f"sudo -u {shlex.quote(user)} -H sh -c {shlex.quote(command)}"
    return [*base_argv(record), "-o", "BatchMode=yes", master_target(record), remote]


def master_exec(record: dict, command: str, user: str = "root",
                stdin: BinaryIO | None = None) -> tuple[int, str]:
    """Run a shell command on the master over ssh (pinned host key) as USER via sudo,
    optionally fed from the binary file STDIN; returns (exit code, output)."""
    full = master_exec_argv(record, command, user)
    try:
        proc = subprocess.run(full, stdin=stdin, capture_output=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImagebakeError(f"ssh to the master failed: {aws.one_line(exc)}") from None
    return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")
