"""Local record of launched clusters, one JSON file per cluster name.

Every later command (status, grow, ssh, tunnel, destroy) finds a cluster by
name alone, whatever its target. Directory: $IMAGEBAKE_STATE_DIR, else
$XDG_STATE_HOME/imagebake, else ~/.local/state/imagebake.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, TypedDict

from . import files
from .errors import ImagebakeError


class _NodeName(TypedDict):
    name: str


class Node(_NodeName, total=False):
    """One slave in a record, one shape on every target: its NAME (what `--node`, `--on`
    and `invoke ssh` take: node01 on docker and aws, the EC2-style host name on qemu) and,
    on a target whose slaves are instances it must find again (aws), the instance's
    fields. Records written before this shape are read by `load` (nodes_from)."""

    id: str                # the instance id (aws)
    private_ip: str | None
    public_ip: str | None
    state: str             # the instance state when last described
    az: str


class Record(TypedDict, total=False):
    """What every cluster's record holds; each target's record adds its own fields
    (DockerRecord, AwsRecord, QemuRecord beside each target's cluster.py). `nodes` lists
    the slaves in launch order, each a Node."""

    name: str
    target: str
    token: str             # the join token: every machine's spec carries it (join, heartbeat)
    launcher_key: str      # the launcher's own key for cluster-wide orders: master spec only
    cookie: str            # the Erlang cookie
    nodes: list[Node]
    workers_per_node: int | None
    ttl_deadline: int | None
    idle_stop: int | None
    created_at: str


def node(name: str, **fields: Any) -> Node:
    """A Node named NAME with the target's FIELDS (an instance's id and addresses)."""
    return {**fields, "name": name}  # type: ignore[typeddict-item]


def node_names(record: dict) -> list[str]:
    """The slaves' names, in launch order."""
    return [n["name"] for n in record.get("nodes", [])]


def nodes_from(saved: list[Any]) -> list[Node]:
    """A record's `nodes` as saved, whatever imagebake wrote it: before Node, docker and
    qemu saved bare names ("node01") and aws saved instance entries without a name (their
    slaves were named node01, node02 ... by position); both read as Nodes."""
    found: list[Node] = []
    for i, entry in enumerate(saved, 1):
        if isinstance(entry, str):
            found.append(node(entry))
        elif "name" in entry:
            found.append(entry)
        else:
            found.append(node(f"node{i:02d}", **entry))
    return found


NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?")


def state_dir() -> Path:
    env = os.environ.get("IMAGEBAKE_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "imagebake"


def check_name(name: str) -> str:
    """A cluster name is a short hostname part: it prefixes container names and tags."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ImagebakeError(
            f"invalid cluster name {name!r}: use 1-20 characters a-z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def _path(name: str) -> Path:
    return state_dir() / "clusters" / f"{check_name(name)}.json"


def save(record: Record) -> Path:
    """Write the record atomically, 0600 in 0700 directories (it holds the cluster's
    join token and cookie): files.write_private, never through a planted link."""
    path = _path(record["name"])
    files.private_dir(state_dir())
    record.setdefault("created_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return files.write_private(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def load(name: str) -> Record | None:
    path = _path(name)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    record["nodes"] = nodes_from(record.get("nodes", []))
    return record


def remove(name: str) -> bool:
    path = _path(name)
    if path.exists():
        path.unlink()
        return True
    return False


def names() -> list[str]:
    folder = state_dir() / "clusters"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json"))


def resolve(name: str | None, target: str | None = None) -> Record:
    """The record for NAME; with one cluster recorded, NAME may be left out."""
    if name is None:
        known = names()
        if not known:
            raise ImagebakeError("no cluster recorded: run `invoke launch` first")
        if len(known) > 1:
            raise ImagebakeError(f"several clusters recorded ({', '.join(known)}): pass --name")
        name = known[0]
    record = load(name)
    if record is None:
        raise ImagebakeError(f"no cluster named {name!r} (known: {', '.join(names()) or 'none'})")
    if target and record.get("target") != target:
        raise ImagebakeError(
            f"cluster {name!r} runs on {record.get('target')}, not {target}"
        )
    return record
