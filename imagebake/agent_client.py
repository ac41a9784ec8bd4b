"""The launcher's signed calls to the master agent, and how to read its replies.

One client for every target and every command (status, launch's wait, extend, shrink's
leave): each request is sealed with the launcher's own key (the record's launcher_key,
which only the master's spec carries: a node's join token orders nothing cluster-wide,
issue 21 N1) and the reply is opened only when
its MAC, cluster, age, type and `in_reply_to` nonce check out (imagebake.agent.protocol),
so a stranger on the path can neither forge readiness nor the host keys `ssh` then pins.

Targets are handed an AgentClient (Target.agent); tests hand them a subclass.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from .agent import protocol
from .agent.ready import joined_names
from .errors import ImagebakeError

__all__ = ["AgentClient", "joined_names", "master_host_key", "members", "node_host_keys"]

STATUS_PATH = "/v1/status"  # imagebake.agent.master routes
EXTEND_PATH = "/v1/extend"
LEAVE_PATH = "/v1/leave"
TIMEOUT = 10.0
STATUS_TIMEOUT = 5.0


def launcher_key(record: dict) -> str:
    """The key every order to the master agent is signed with; one line when the record
    predates it."""
    key = record.get("launcher_key")
    if not key:
        raise ImagebakeError(f"cluster {record.get('name')!r} was launched before the "
                             "launcher had its own key: its master takes no orders from "
                             "here (destroy it and launch it again)")
    return key


class AgentClient:
    """Signed requests to the master agent's join port."""

    def call(self, address: str, port: int, record: dict, path: str, msg: dict,
             reply_type: str, timeout: float = TIMEOUT) -> dict:
        """POST the signed MSG; the verified reply, or one line saying why not."""
        key = launcher_key(record)
        body = protocol.seal(key, msg)
        request = urllib.request.Request(f"http://{address}:{port}{path}", data=body,
                                         method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                raw = response.read(protocol.MAX_BODY + 1)
        except urllib.error.HTTPError as exc:
            text = exc.read(300).decode("utf-8", "replace").strip().splitlines()
            raise ImagebakeError(f"the master agent of {record['name']!r} answered HTTP "
                                 f"{exc.code}: {text[0] if text else ''}") from None
        except (OSError, ValueError) as exc:
            raise ImagebakeError(f"cannot reach the master agent of {record['name']!r} at "
                                 f"{address}:{port}: {exc}") from None
        try:
            reply = protocol.open_envelope(key, raw, record["name"], time.time(),
                                           reply_type)
        except protocol.ProtocolError as exc:
            raise ImagebakeError(f"the master agent's reply failed verification: {exc}"
                                 ) from None
        if reply.get("in_reply_to") != msg["nonce"]:
            raise ImagebakeError("the master agent's reply is not for this request")
        return reply

    def status(self, address: str, port: int, record: dict,
               timeout: float = STATUS_TIMEOUT) -> dict | None:
        """The verified status reply, or None while the agent cannot be reached (or its
        answer does not verify: a forged reply counts as no reply)."""
        msg = protocol.make_status_request(record["name"], time.time())
        try:
            return self.call(address, port, record, STATUS_PATH, msg, "status_reply", timeout)
        except ImagebakeError:
            return None

    def extend(self, address: str, port: int, record: dict, seconds: int) -> dict:
        msg = protocol.make_extend_request(record["name"], time.time(), seconds)
        return self.call(address, port, record, EXTEND_PATH, msg, "extend_reply")

    def leave(self, address: str, port: int, record: dict, hostnames: list[str]) -> dict:
        msg = protocol.make_leave_request(record["name"], time.time(), hostnames)
        return self.call(address, port, record, LEAVE_PATH, msg, "leave_reply")


# ------------------------------------------------------------------ reading a status reply
def members(reply: dict | None) -> dict[str, dict]:
    """hostname -> entry of the nodes the master agent reports as joined."""
    found: Any = (reply or {}).get("nodes") or []
    if isinstance(found, dict):
        return {name: entry or {} for name, entry in found.items()}
    return {m["hostname"]: m for m in found if isinstance(m, dict) and m.get("hostname")}


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
    found: Any = (reply or {}).get("nodes") or {}
    items = found.values() if isinstance(found, dict) else found
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
