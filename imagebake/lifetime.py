"""A cluster's lifetime, launcher side: --ttl / --idle-stop values, `invoke extend` (a
signed request to the master agent) and the lifetime lines of `invoke status`.

Both limits are enforced on the cluster (docs/agent.md "TTL" and "Idle stop"): the
laptop may be off. This module only checks the values, asks the master agent and
shows what it answers.
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request
from typing import Any

from .agent import protocol
from .errors import ImagebakeError

_DURATION = re.compile(r"(\d{1,7})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
IDLE_MIN = 60  # documented minimum of --idle-stop
IDLE_MAX = 30 * 86400
# Test-only: a lower minimum for --idle-stop (the docker cluster test uses a few seconds).
IDLE_MIN_ENV = "IMAGEBAKE_TEST_IDLE_STOP_MIN_SECONDS"
EXTEND_PATH = "/v1/extend"
TIMEOUT = 10.0


def _seconds(value: Any, flag: str) -> int:
    text = str(value).strip() if isinstance(value, (str, int)) and \
        not isinstance(value, bool) else ""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ImagebakeError(f"{flag} {value!r} is not a duration: write a whole number and "
                             "m, h or d, e.g. 30m, 4h")
    return int(match.group(1)) * _UNITS[match.group(2)]


def idle_stop_seconds(value: Any) -> int | None:
    """'30m', '2h' -> seconds (1m to 30d); None -> None."""
    if value is None:
        return None
    seconds = _seconds(value, "--idle-stop")
    floor = IDLE_MIN
    override = os.environ.get(IDLE_MIN_ENV, "").strip()
    if override.isdigit() and int(override) >= 1:
        floor = int(override)
    if not floor <= seconds <= IDLE_MAX:
        raise ImagebakeError(f"--idle-stop {value!r} is out of range: use 1m to 30d")
    return seconds


def ttl_seconds(value: Any) -> int | None:
    """'90m', '4h', '2d' -> seconds (10m to 30d; as for aws); None -> None."""
    from .targets.aws import inputs

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ImagebakeError(f"--ttl {value!r} is not a duration: write a whole number and "
                             "m, h or d, e.g. 90m, 4h")
    return inputs.ttl_seconds(str(value))


def when(epoch: int | None, now: float | None = None) -> str:
    """'2026-11-26 11:30 UTC (in 2h 0m)' for a unix time."""
    if epoch is None:
        return "none"
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
    left = int(epoch - now)
    span = _span(abs(left))
    return f"{stamp} ({'in ' + span if left >= 0 else span + ' ago'})"


def _span(seconds: int) -> str:
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds}s"


# ------------------------------------------------------------------ extend
def signed_call(address: str, port: int, record: dict, path: str, msg: dict,
                reply_type: str, timeout: float = TIMEOUT) -> dict:
    """POST the signed MSG to the master agent; its verified reply, or one line why not."""
    body = protocol.seal(record["token"], msg)
    request = urllib.request.Request(f"http://{address}:{port}{path}", data=body,
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw = response.read(protocol.MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        text = exc.read(300).decode("utf-8", "replace").strip().splitlines()
        raise ImagebakeError(f"the master agent of {record['name']!r} answered HTTP {exc.code}"
                             f": {text[0] if text else ''}") from None
    except (OSError, ValueError) as exc:
        raise ImagebakeError(f"cannot reach the master agent of {record['name']!r} at "
                             f"{address}:{port}: {exc}") from None
    try:
        reply = protocol.open_envelope(record["token"], raw, record["name"], time.time(),
                                       reply_type)
    except protocol.ProtocolError as exc:
        raise ImagebakeError(f"the master agent's reply failed verification: {exc}") from None
    if reply.get("in_reply_to") != msg["nonce"]:
        raise ImagebakeError("the master agent's reply is not for this request")
    return reply


def extend(target: Any, record: dict, ttl: Any) -> str:
    """Move the TTL deadline to now + TTL (the master's clock) through a signed request;
    the master re-arms its power-off and the nodes follow within a heartbeat (30 s)."""
    seconds = ttl_seconds(ttl)
    if seconds is None:
        raise ImagebakeError("--ttl is required, e.g. invoke extend --name X --ttl 2h")
    endpoint = target.agent_endpoint(record)
    if endpoint is None:
        raise ImagebakeError(f"the master of {record['name']!r} is not running: nothing to "
                             "extend (a stopped cluster stays stopped)")
    msg = protocol.make_extend_request(record["name"], time.time(), seconds)
    reply = signed_call(endpoint[0], endpoint[1], record, EXTEND_PATH, msg, "extend_reply")
    deadline = reply.get("ttl_deadline")
    if not isinstance(deadline, int):
        raise ImagebakeError("the master agent's reply carries no deadline")
    record["ttl_deadline"] = deadline  # later grows hand it to new nodes
    record["ttl"] = str(ttl)
    from . import state

    state.save(record)
    previous = reply.get("previous")
    armed = reply.get("armed") or "-"
    return (f"TTL of {record['name']}: power-off at {when(deadline)}; was "
            f"{when(previous) if previous else 'none'}\n"
            f"  master: {armed}; nodes take it from their next heartbeat (within 30 s)")


# ------------------------------------------------------------------ status
def view(target: Any, record: dict, report: dict) -> dict:
    """The lifetime part of a status report: the master agent's own view (signed status
    call) while it runs, else what the record knows and that the master is down."""
    from .targets.aws.readiness import agent_status

    out: dict[str, Any] = {}
    master_state = (report.get("master") or {}).get("state")
    endpoint = None
    if master_state in (None, "running"):
        try:
            endpoint = target.agent_endpoint(record)
        except ImagebakeError:
            endpoint = None
    ask = getattr(target, "readiness", None) or agent_status  # aws tests inject their own
    reply = ask(endpoint[0], endpoint[1], record) if endpoint else None
    if reply and isinstance(reply.get("lifetime"), dict):
        out = dict(reply["lifetime"])
        out["source"] = "master agent"
    else:
        out = {"ttl_deadline": record.get("ttl_deadline"), "idle_stop": record.get("idle_stop"),
               "source": "launch record (the master agent did not answer)"}
        if master_state and master_state not in ("running", "created", "pending"):
            out["stopped"] = f"the master is {master_state}"
    return out


def render(life: dict | None) -> list[str]:
    """Status lines: TTL deadline, idle stop (last job, stop at), stopping/stopped."""
    if not life:
        return []
    now = life.get("now") or time.time()
    lines = [f"  ttl     {when(life.get('ttl_deadline'), now)}"
             + (" (moved by extend)" if life.get("ttl_moved") else "")]
    idle_stop = life.get("idle_stop")
    if not idle_stop:
        lines.append("  idle    no idle stop")
    else:
        idle = life.get("idle") or {}
        if idle:
            job = idle.get("last_job")
            last = (f"last job {job['name']} ({job['status']}, started "
                    f"{when(job['start'], now)})" if job else "no job yet")
            running = idle.get("running_jobs") or []
            lines.append(f"  idle    stop after {_span(idle_stop)} without a job: "
                         + (f"{len(running)} job(s) running" if running else
                            f"idle {_span(idle.get('idle_for', 0))}, stop at "
                            f"{when(idle.get('stop_at'), now)}"))
            lines.append(f"          {last}; Disco {idle.get('disco')}")
        else:
            lines.append(f"  idle    stop after {_span(idle_stop)} without a job")
    if life.get("stopping"):
        told = ", ".join(life.get("told") or []) or "none yet"
        lines.append(f"  STOPPING {life['stopping']} (nodes told: {told})")
    if life.get("stopped"):
        lines.append(f"  STOPPED {life['stopped']} (TTL passed or idle stop; "
                     "`invoke destroy` removes what is left)")
    return lines
