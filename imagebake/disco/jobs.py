"""Run a Disco job script on a cluster's master, bounded, and say in one line why it failed.

A Disco job can fail in ways that never end by themselves: a worker that writes to its
stderr (file descriptor 2, Disco's worker protocol channel) makes the master retry the
task again and again (`Could not parse worker event`, `Worker died`), and the client
would wait forever. So every run here has a deadline; a job that failed or ran out of time
is killed (`disco kill`: nothing left running on the slaves) and its reason is read from
Disco's own job events (the first FATAL/ERROR/"Worker died" event).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..targets.base import Target

STDERR_MARK = "=== imagebake: stderr ==="
DEFAULT_TIMEOUT = 300


@dataclass
class JobRun:
    rc: int
    stdout: str
    stderr: str
    name: str | None
    events: list[list[str]] = field(default_factory=list)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def hosts(self) -> dict[str, list[str]]:
        return task_hosts(self.events)


def events(target: Target, record: dict, job: str) -> list[list[str]]:
    """Disco's events of JOB: [time, host, message] each (`disco events`)."""
    _, out = target.exec(record, f"disco events {shlex.quote(job)}", user="disco")
    found = []
    for line in out.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, list) and len(event) == 3:
            found.append(event)
    return found


def task_hosts(job_events: list[list[str]]) -> dict[str, list[str]]:
    """host -> the tasks Disco assigned to it (`map:0 assigned to node02`)."""
    hosts: dict[str, list[str]] = {}
    for _, _, message in job_events:
        m = re.fullmatch(r"(\S+:\d+) assigned to (\S+)", message)
        if m:
            hosts.setdefault(m.group(2), []).append(m.group(1))
    return hosts


def failure_reason(job_events: list[list[str]]) -> str:
    """One line from Disco's events saying why a job failed ('' when none says)."""
    assigned: dict[str, str] = {}
    for _, host, message in job_events:
        lines = [x.strip() for x in str(message).splitlines() if x.strip()]
        if not lines:
            continue
        head = lines[0]
        m = re.fullmatch(r"(\S+:\d+) assigned to (\S+)", head)
        if m:
            assigned[m.group(1)] = m.group(2)
            continue
        task = re.search(r"\[(\S+:\d+)\]", head)
        name = task.group(1) if task else "task"
        where = f"{name} on {assigned.get(name, host)}"
        if head.startswith(("FATAL:", "ERROR:")):
            return f"{where}: {lines[-1][:200]}"  # a traceback's last line: the exception
        if "Worker died" in head:
            words = lines[1] if len(lines) > 1 else ""
            return (f"{where}: the worker died (its last words on stderr, Disco's protocol "
                    f"channel: {words[:120]!r})")
        if "Could not parse worker event" in head:
            return (f"{where}: the job wrote to stderr, which is Disco's worker protocol "
                    "channel (Could not parse worker event)")
    lost = [m for _, _, m in job_events
            if re.match(r"^Task \S+ failed on \"[^\"]+\"", str(m))]
    if lost:  # a slave went away (killed, stopped, unreachable) during the job
        m = re.match(r"^Task (\S+) failed on \"([^\"]+)\"", lost[-1])
        return f"{m.group(1)} failed on {m.group(2)} ({len(lost)} task failures; a slave lost?)"
    return ""


def run_script(target: Target, record: dict, script: Path | str, args: list[str],
               timeout: int = DEFAULT_TIMEOUT, env: dict[str, str] | None = None) -> JobRun:
    """Upload SCRIPT to the master and run it as disco with ARGS; it must print `job NAME`
    on stderr and honour JOB_TIMEOUT (examples/ngram_top.py does). Never longer than
    TIMEOUT + 30 s; a failed or timed-out job is killed and its reason read from events."""
    remote = f"/tmp/imagebake_{Path(script).name}"
    with open(script, "rb") as code:
        target.exec(record, f"cat > {remote}", user="disco", stdin=code)
    env_text = " ".join(f"{k}={shlex.quote(v)}" for k, v in {
        "JOB_TIMEOUT": str(timeout), **(env or {})}.items())
    argv = " ".join(shlex.quote(a) for a in args)
    rc, out = target.exec(
        record, f"cd /tmp && err=$(mktemp) && {env_text} timeout -s KILL {timeout + 30} "
                f"python3 -W ignore::UserWarning {remote} {argv} 2>$err; rc=$?; "
                f"echo '{STDERR_MARK}'; cat $err; rm -f $err; exit $rc", user="disco")
    stdout, _, stderr = out.partition(STDERR_MARK)
    m = re.search(r"^job (\S+)$", stderr, re.M)
    run = JobRun(rc, stdout.strip("\n") + "\n" if stdout.strip() else "", stderr.strip(),
                 m.group(1) if m else None)
    if run.name:
        run.events = events(target, record, run.name)
    if not run.ok:
        if run.name:
            target.exec(record, f"disco kill {shlex.quote(run.name)}", user="disco")
        why = failure_reason(run.events)
        if not why:
            last = [x for x in run.stderr.splitlines() if x.strip()]
            why = last[-1][:200] if last else f"exit code {rc}"
        if "Timeout" in run.stderr or rc in (124, 137):
            why = f"no result within {timeout}s" + (f"; {why}" if why and "Timeout" not in why
                                                    else "")
        run.reason = f"job {run.name or '(not started)'} failed: {why}"
    return run
