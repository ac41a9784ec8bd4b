"""Asking the master agent, over its join port, whether the cluster has formed.

The request and the reply are signed with the cluster token (imagebake.agent.protocol),
so a stranger on the path can neither forge readiness nor the master's host key that
`ssh` then pins. A readiness callable takes (address, port, record) and returns the
verified status reply, or None while the agent cannot be reached; tests pass their own.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any, Callable, Optional

from ...agent import protocol

Readiness = Callable[[str, int, dict], Optional[dict]]
STATUS_PATH = "/v1/status"  # imagebake.agent.master routes
TIMEOUT = 5.0


def agent_status(address: str, port: int, record: dict, timeout: float = TIMEOUT) -> dict | None:
    """The master agent's verified status reply, or None when it cannot be reached yet."""
    now = time.time()
    request_msg = protocol.make_status_request(record["name"], now)
    body = protocol.seal(record["token"], request_msg)
    request = urllib.request.Request(
        f"http://{address}:{port}{STATUS_PATH}", data=body, method="POST",
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw = response.read(protocol.MAX_BODY + 1)
    except (OSError, urllib.error.URLError, ValueError):
        return None
    try:
        reply = protocol.open_envelope(record["token"], raw, record["name"], time.time(),
                                       "status_reply")
    except protocol.ProtocolError:
        return None
    if reply.get("in_reply_to") != request_msg["nonce"]:
        return None
    return reply


def joined_names(reply: dict | None) -> set[str]:
    """Host names of the nodes the master reports as joined."""
    members: Any = (reply or {}).get("nodes") or {}
    if isinstance(members, dict):
        return {str(k) for k in members}
    return {str(m.get("hostname")) for m in members if isinstance(m, dict)}


def is_ready(reply: dict | None, expected: int) -> bool:
    if not reply:
        return False
    if reply.get("ready") is False:
        return False
    return len(joined_names(reply)) >= expected


def master_host_key(reply: dict | None) -> str | None:
    key = (reply or {}).get("host_pubkey")
    return protocol.key_only(key) if protocol.is_pubkey(key) else None


def node_host_keys(reply: dict | None, allowed: Iterable[str] | None = None) -> dict[str, str]:
    """address -> host key of each joined node, when the master reports them.

    Only a node's ``address`` counts (the peer address the master saw it join from),
    never the other ``addresses`` it claims; with ALLOWED (the private addresses EC2
    reports for the cluster's nodes) only those. An address two different keys are
    claimed for is pinned to neither."""
    allow = None if allowed is None else {str(a) for a in allowed if a}
    claims: dict[str, set[str]] = {}
    members: Any = (reply or {}).get("nodes") or {}
    items = members.values() if isinstance(members, dict) else members
    for member in items:
        if not isinstance(member, dict):
            continue
        key = member.get("host_pubkey")
        address = member.get("address")
        if not protocol.is_pubkey(key) or not isinstance(address, str) or not address:
            continue
        if allow is not None and address not in allow:
            continue
        claims.setdefault(address, set()).add(protocol.key_only(key))
    return {address: keys.pop() for address, keys in claims.items() if len(keys) == 1}
