"""A cluster's lifetime, launcher side: --ttl / --idle-stop values, `invoke extend` (a
signed request to the master agent) and the lifetime lines of `invoke status`.

Both limits are enforced on the cluster (docs/agent.md "TTL" and "Idle stop"): the
laptop may be off. This module only checks the values, asks the master agent and
shows what it answers.
"""

from __future__ import annotations

import time
from typing import Any

from .agent_client import AgentClient
from .durations import idle_stop_seconds, ttl_seconds
from .errors import ImagebakeError
from .terminal import safe_fields, safe_text

__all__ = ["extend", "idle_stop_seconds", "render", "ttl_seconds", "view",
           "when"]


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
def extend(target: Any, record: dict, ttl: Any, agent: AgentClient | None = None) -> str:
    """Move the TTL deadline to now + TTL (the master's clock) through a signed request
    (AGENT: the target's client); the master re-arms its power-off and the nodes follow
    within a heartbeat (30 s)."""
    seconds = ttl_seconds(ttl)
    if seconds is None:
        raise ImagebakeError("--ttl is required, e.g. invoke extend --name X --ttl 2h")
    endpoint = target.agent_endpoint(record)
    if endpoint is None:
        raise ImagebakeError(f"the master of {record['name']!r} is not running: nothing to "
                             "extend (a stopped cluster stays stopped)")
    reply = (agent or AgentClient()).extend(endpoint[0], endpoint[1], record, seconds)
    deadline = reply.get("ttl_deadline")
    if not isinstance(deadline, int):
        raise ImagebakeError("the master agent's reply carries no deadline")
    record["ttl_deadline"] = deadline  # later grows hand it to new nodes
    record["ttl"] = str(ttl)
    from . import state

    state.save(record)
    previous = reply.get("previous")
    armed = safe_text(reply.get("armed") or "-", one_line=True)
    return (f"TTL of {record['name']}: power-off at {when(deadline)}; was "
            f"{when(previous) if previous else 'none'}\n"
            f"  master: {armed}; nodes take it from their next heartbeat (within 30 s)")


# ------------------------------------------------------------------ status
def view(target: Any, record: dict, report: dict, agent: AgentClient | None = None) -> dict:
    """The lifetime part of a status report: the master agent's own view (signed status
    call through AGENT, the target's client) while it runs, else what the record knows
    and that the master is down."""
    out: dict[str, Any] = {}
    master_state = (report.get("master") or {}).get("state")
    endpoint = None
    if master_state in (None, "running"):
        try:
            endpoint = target.agent_endpoint(record)
        except ImagebakeError:
            endpoint = None
    reply = (agent or AgentClient()).status(endpoint[0], endpoint[1], record) \
        if endpoint else None
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
    life = safe_fields(life)  # the master's and Disco's words, shown escaped
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
