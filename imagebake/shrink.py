"""`invoke shrink`: remove slaves from a running cluster without losing DDFS data.

1. check (one line, exit 2, nothing changed): exactly one of --slaves K / --node a,b;
   never the master, an unknown node, K <= 0 or K >= the number of slaves, nor fewer
   storage nodes than DDFS's replica count (the master agent reports it);
2. drain (skipped by --force): Disco's `blacklist` (no new tasks) and DDFS's
   `gc_blacklist` for every chosen node (Disco 0.5.4 `disco_web.erl` postop, body a JSON
   string), then DDFS GC runs (`/ddfs/ctrl/gc_start`) until `/ddfs/ctrl/safe_gc_blacklist`
   lists every chosen node: GC re-replicated their blobs and tags elsewhere and removed
   the references to their copies (`ddfs_gc_main.erl`, "DDFS node removal"); bounded;
3. leave: a signed POST /v1/leave to the master agent, which removes the nodes from its
   membership, Disco's hosts table (save_config_table), dnsmasq hosts and known_hosts;
4. remove: the target removes the machines (Target.remove_members: docker removes the
   containers, aws terminates exactly those instances in one owner-scoped call, qemu
   stops the VMs) and the record forgets them (Target.forget_members).

Disco's HTTP API is unauthenticated and reached on the master's loopback only: the
calls run on the master (target.exec, python3 there), never over the network.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import ports
from .errors import ImagebakeError
from .targets.base import Member, Target

DRAIN_TIMEOUT = 900.0  # DDFS GC waits 5 min after Disco starts before its first run
POLL = 3.0


@dataclass
class Plan:
    record: dict
    chosen: list[Member]
    remaining: int
    replicas: int
    force: bool = False
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ check
def _count(value: Any) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.lstrip("-").isdigit():
        raise ImagebakeError(f"--slaves {value!r} is not a whole number")
    return int(text)


def check(target: Target, record: dict, slaves: Any = None, node: Any = None,
          status_reply: dict | None = None, force: bool = False) -> Plan:
    """What shrink would remove, or one line saying why not; changes nothing."""
    name = record["name"]
    have = target.members(record, status_reply)
    if (slaves is None) == (node is None):
        raise ImagebakeError("shrink takes exactly one of --slaves K or --node node03[,node04]")
    if slaves is not None:
        k = _count(slaves)
        if k <= 0:
            raise ImagebakeError(f"--slaves {k}: remove at least one slave")
        if k >= len(have):
            raise ImagebakeError(f"--slaves {k}: {name!r} has {len(have)} slave(s); a cluster "
                                 "keeps at least one (use `invoke destroy` to remove it all)")
        chosen = have[-k:]  # the newest ones
    else:
        wanted = [w.strip() for w in str(node).split(",")]
        if not all(wanted):
            raise ImagebakeError(f"--node {node!r}: an empty node name")
        if "master" in wanted:
            raise ImagebakeError("--node master: the master cannot be removed (it runs Disco, "
                                 "DDFS's tags and DNS); `invoke destroy` removes the cluster")
        by_name = {}
        for m in have:
            by_name[m.label] = m
            if m.hostname:
                by_name[m.hostname] = m
        unknown = [w for w in wanted if w not in by_name]
        if unknown:
            raise ImagebakeError(f"--node: no node {unknown[0]!r} in {name!r} (slaves: "
                                 f"{', '.join(m.label for m in have)})")
        chosen = []
        for w in wanted:
            if by_name[w] not in chosen:
                chosen.append(by_name[w])
        if len(chosen) >= len(have):
            raise ImagebakeError(f"--node: that is every slave of {name!r}; a cluster keeps "
                                 "at least one (use `invoke destroy` to remove it all)")
    remaining = len(have) - len(chosen)
    replicas = (status_reply or {}).get("ddfs_replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        replicas = max(1, min(3, len(have)))  # what the agent writes (at most 3)
    if remaining < replicas:
        raise ImagebakeError(
            f"removing {len(chosen)} slave(s) leaves {remaining} DDFS storage node(s), below "
            f"the replica count {replicas} (DDFS_BLOB_REPLICAS): DDFS could not keep every "
            f"blob; remove at most {len(have) - replicas}")
    return Plan(record, chosen, remaining, replicas, force)


# ------------------------------------------------------------------ Disco on the master
_CTRL = r"""
import json, sys, urllib.request, urllib.error
out = []
for method, path, body in json.loads(sys.argv[1]):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://127.0.0.1:%s%s" % (sys.argv[2], path), data=data,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            out.append([r.status, r.read().decode("utf-8", "replace")])
    except urllib.error.HTTPError as e:
        out.append([e.code, e.read().decode("utf-8", "replace")])
    except Exception as e:
        out.append([0, str(e)])
print("IMAGEBAKE-CTRL " + json.dumps(out))
"""


def disco_calls(target: Target, record: dict) -> Callable[[list], list]:
    """calls([(method, path, json body or None)]) -> [(status, text)], run on the master's
    loopback in one target.exec."""
    port = record.get("disco_port") or ports.DISCO

    def calls(batch: list) -> list:
        command = (f"python3 -c {shlex.quote(_CTRL)} {shlex.quote(json.dumps(batch))} "
                   f"{int(port)}")
        code, out = target.exec(record, command)
        for line in out.splitlines():
            if line.startswith("IMAGEBAKE-CTRL "):
                return [tuple(x) for x in json.loads(line[len("IMAGEBAKE-CTRL "):])]
        raise ImagebakeError(f"cannot reach Disco on the master of {record['name']!r} "
                             f"(exit {code}): {out.strip()[-200:]}")
    return calls


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def drain(plan: Plan, calls: Callable[[list], list], timeout: float = DRAIN_TIMEOUT,
          poll: float = POLL, progress: Any = None, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> str:
    """Blacklist the chosen nodes for tasks and in DDFS; wait until no task runs on them
    and DDFS GC reports them safe to remove. One line on timeout (nodes stay
    blacklisted: nothing is lost; run shrink again, or --force)."""
    hosts = [m.hostname for m in plan.chosen if m.hostname]
    if not hosts:
        return "nothing to drain (no chosen node ever joined)"
    batch = []
    for host in hosts:
        batch += [("POST", "/disco/ctrl/blacklist", host),
                  ("POST", "/disco/ctrl/gc_blacklist", host)]
    for (status, text), (_, path, host) in zip(calls(batch), batch):
        if status != 200:
            raise ImagebakeError(f"Disco refused {path} {host}: HTTP {status} {text[:120]}")
    begun = clock()
    deadline = begun + timeout
    starts = 0
    phase = "waiting for DDFS GC"
    while True:
        info, safe, gc = calls([("GET", "/disco/ctrl/nodeinfo", None),
                                ("GET", "/ddfs/ctrl/safe_gc_blacklist", None),
                                ("GET", "/ddfs/ctrl/gc_status", None)])
        nodeinfo = _json(info[1]) if info[0] == 200 else None
        busy = sorted(h for h in hosts if isinstance(nodeinfo, dict)
                      and (nodeinfo.get(h) or {}).get("tasks"))
        safe_set = set(_json(safe[1]) or []) if safe[0] == 200 else set()
        missing = [h for h in hosts if h not in safe_set]
        gc_text = _json(gc[1]) if gc[0] == 200 else None
        if not busy and not missing:
            took = clock() - begun
            if progress:
                progress(f"drained {', '.join(hosts)} in {took:.0f}s", done=True)
            return (f"drained {', '.join(hosts)} in {took:.0f}s: no task runs there and DDFS "
                    f"re-replicated their data (GC run(s) started: {starts})")
        if gc_text == "":  # GC not running: start one (answers "GC is waiting" at first)
            ok = calls([("GET", "/ddfs/ctrl/gc_start", None)])[0]
            if ok[0] == 200 and _json(ok[1]) == "GC has started":
                starts += 1
                phase = "DDFS GC running"
            elif ok[0] == 200:
                phase = "DDFS GC waits for its first run (5 min after Disco started)"
        elif gc_text:
            phase = f"DDFS GC: {gc_text}"
        left = deadline - clock()
        if progress:
            # no countdown in the text: a plain (non-terminal) display prints a line only
            # when the phase changes; the live one shows the elapsed time itself
            progress(f"{phase}; not yet safe: {', '.join(missing) or '-'}"
                     + (f"; tasks still on {', '.join(busy)}" if busy else "")
                     + f" (gives up after {timeout:.0f}s)", done=False)
        if left <= 0:
            raise ImagebakeError(
                f"drain timed out after {timeout:.0f}s: DDFS has not confirmed "
                f"{', '.join(missing or busy)} safe to remove; they stay blacklisted (nothing "
                f"lost, nothing removed): run shrink again, or --force to remove them anyway")
        sleep(min(poll, max(0.1, left)))


# ------------------------------------------------------------------ leave
def leave(target: Target, plan: Plan) -> dict:
    """The signed /v1/leave to the master agent (the target's client); its verified reply."""
    record = plan.record
    names = [m.hostname for m in plan.chosen if m.hostname]
    if not names:
        return {"removed": [], "unknown": []}
    endpoint = target.agent_endpoint(record)
    if endpoint is None:
        raise ImagebakeError(f"the master of {record['name']!r} is not running: cannot shrink")
    return target.agent.leave(endpoint[0], endpoint[1], record, names)


# ------------------------------------------------------------------ the command
def status_reply(target: Target, record: dict) -> dict | None:
    """The master agent's signed status (membership, ddfs_replicas), or None."""
    endpoint = target.agent_endpoint(record)
    if endpoint is None:
        raise ImagebakeError(f"the master of {record['name']!r} is not running: cannot shrink")
    return target.agent.status(endpoint[0], endpoint[1], record)


def shrink(target: Target, record: dict, slaves: Any = None, node: Any = None,
           force: bool = False, timeout: float = DRAIN_TIMEOUT,
           calls: Callable[[list], list] | None = None, say: Callable[[str], None] = print,
           progress: Any = None) -> str:
    """Check, drain (unless FORCE), leave, terminate, forget; a summary."""
    if (slaves is None) == (node is None):  # before asking anything
        check(target, record, slaves, node, None)
    reply = status_reply(target, record)
    if reply is None and not force:
        raise ImagebakeError(f"the master agent of {record['name']!r} does not answer: cannot "
                             "drain safely (`invoke status`; --force removes without a drain)")
    plan = check(target, record, slaves, node, reply, force)
    labels = ", ".join(m.label for m in plan.chosen)
    if force:
        say(f"--force: not draining {labels}: DDFS blobs and tags whose only live replicas "
            "are there, and results of running jobs kept there, may be lost")
        drained = "not drained (--force)"
    else:
        if progress is None:
            from .progress import Board

            with Board(plain=True) as board:
                row = board.row(f"drain {labels}", status="draining")

                def show(text: str, done: bool = False) -> None:
                    row.update(status="drained" if done else "draining", step=text,
                               finished=done)

                drained = drain(plan, calls or disco_calls(target, record), timeout=timeout,
                                progress=show)
        else:
            drained = drain(plan, calls or disco_calls(target, record), timeout=timeout,
                            progress=progress)
        say(drained)
    answer = leave(target, plan)
    terminated = target.remove_members(record, plan.chosen)
    target.forget_members(record, plan.chosen)
    unknown = answer.get("unknown") or []
    return (f"shrank {record['name']} to {plan.remaining} slave(s): removed {labels}; "
            f"{drained}; master agent: left {', '.join(answer.get('removed') or []) or '-'}"
            + (f" (not members: {', '.join(unknown)})" if unknown else "")
            + f"; {terminated}")
