"""`invoke job`: run a Disco job script from the laptop, on any target.

The script (and each `--with DIR`, its modules) goes to a private directory on the master
(a tar through the target's exec channel), runs there as disco under job_runner.py, which
reports the job's name and its stages from Disco's events API; the laptop prints the
script's output as it comes, the stages on stderr, and ends with exit 0 when Disco says the
job is ready, or 1 with the failure reason (imagebake.disco.jobs, from Disco's events). The
directory is removed when the script ends, whatever the outcome.

`job-status`, `job-logs`, `job-kill` and `job-list` follow a job (`--detach` returns its
name as soon as Disco accepted it).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import targets
from ..errors import ImagebakeError
from ..terminal import safe_text
from . import job_runner, jobs

RUNNER = Path(job_runner.__file__)
MAX_BUNDLE = 50 * 2**20
JOB_NAME = re.compile(r"[A-Za-z0-9_@:.\-]{1,200}")
INTERRUPT = ("ask", "kill", "leave")


class JobFailed(ImagebakeError):
    """The job ran and failed (or could not start): exit 1 with the reason."""

    exit_code = 1


def check_job_name(name: str | None) -> str | None:
    if name is not None and not JOB_NAME.fullmatch(name):
        raise ImagebakeError(f"invalid job name {name!r}: e.g. Job@704:a6210:85dea")
    return name


def bundle(script: str, with_dirs: list[str]) -> bytes:
    """A tar of SCRIPT at the top and each DIR under its own name; one line when a path is
    missing, a name repeats, or it all passes MAX_BUNDLE bytes."""
    path = Path(script)
    if not path.is_file():
        raise ImagebakeError(f"job file not found: {script}")
    if path.suffix != ".py":
        raise ImagebakeError(f"job file {script}: a Python script (.py) is expected")
    names = {path.name}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(path, arcname=path.name)
        for folder in with_dirs:
            where = Path(folder)
            if not where.is_dir():
                raise ImagebakeError(f"--with {folder}: not a directory")
            if where.resolve().name in names or ":" in where.resolve().name:
                raise ImagebakeError(f"--with {folder}: {where.resolve().name!r} is given twice")
            names.add(where.resolve().name)
            tar.add(where, arcname=where.resolve().name,
                    filter=lambda info: None if info.issym() or "__pycache__" in info.name
                    else info)
            if buf.tell() > MAX_BUNDLE:
                break
    if buf.tell() > MAX_BUNDLE:
        raise ImagebakeError(f"the job and its --with folders pass {MAX_BUNDLE // 2**20} MiB: "
                             "put data into DDFS (invoke ddfs-load), not beside the job")
    return buf.getvalue()


def remote_command(script: str, args: list[str], detach: bool,
                   with_dirs: list[str] | None = None) -> str:
    """Unpack the tar from stdin into a private directory, run the script there as
    disco (each --with folder on its sys.path), and remove the directory when it ends."""
    runner = shlex.quote(RUNNER.read_text())
    argv = " ".join(shlex.quote(a) for a in [Path(script).name, *args])
    folders = ":".join(Path(d).resolve().name for d in with_dirs or [])
    env = ("IMAGEBAKE_DETACH=1 " if detach else "") + (
        f"IMAGEBAKE_WITH={shlex.quote(folders)} " if folders else "")
    return ("d=$(mktemp -d /tmp/imagebake-job.XXXXXX) || exit 97; "
            "trap 'rm -rf \"$d\"' EXIT; tar -x -C \"$d\" || exit 97; cd \"$d\" || exit 97; "
            f"{env}python3 -W ignore::UserWarning -c {runner} {argv}")


@dataclass
class Watch:
    """What the runner said: its pid, the jobs, the stages, the final states."""

    pid: int = 0
    names: list[str] = field(default_factory=list)
    final: dict[str, str] = field(default_factory=dict)
    stderr: list[str] = field(default_factory=list)
    shown: str = ""
    last: float = 0.0

    def take(self, line: str, err) -> None:
        if not line.startswith(job_runner.MARK):
            self.stderr.append(line.rstrip("\n"))
            err.write(safe_text(line))
            err.flush()
            return
        try:
            said = json.loads(line[len(job_runner.MARK):])
        except ValueError:
            return
        if "pid" in said:
            self.pid = int(said["pid"])
        elif "job" in said:
            self.names.append(str(said["job"]))
            err.write(f"job {safe_text(said['job'], one_line=True)} submitted\n")
        elif "progress" in said or "final" in said:
            name = str(said.get("progress") or said.get("final"))
            text = f"job {name}: {said.get('active')}: {stages(said.get('pipeline'))}"
            if "final" in said:
                self.final[name] = str(said.get("active"))
            now = time.monotonic()
            if text != self.shown and (now - self.last > 2 or "final" in said
                                       or said.get("active") != "active"):
                self.shown, self.last = text, now
                err.write(safe_text(text, one_line=True) + "\n")
                err.flush()


def stages(pipeline) -> str:
    """'map 3/8, map_shuffle 0/2' from jobinfo's pipeline rows [stage, pending,
    count - running - done, running, done, failed] (disco_web.erl render_jobinfo)."""
    parts = []
    for row in pipeline or []:
        try:
            stage, _pending, waiting, running, done, failed = row[:6]
            total = int(waiting) + int(running) + int(done)  # Disco's task count
            parts.append(f"{stage} {done}/{total}" + (f" ({failed} failed)" if failed else ""))
        except (TypeError, ValueError):
            continue
    return ", ".join(parts) or "starting"


def _pump(stream, take) -> None:
    for raw in iter(stream.readline, b""):
        take(raw.decode("utf-8", "replace"))


def _ask_kill(name: str) -> bool:
    if not sys.stdin.isatty():
        return True
    try:
        answer = input(f"\nkill job {name}? [y = kill it / N = leave it running] ")
    except (EOFError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in ("y", "yes")


def run(record: dict, script: str, args: list[str], with_dirs: list[str] | None = None,
        detach: bool = False, results: str | None = None, on_interrupt: str = "ask",
        out=None, err=None) -> str:
    """Run SCRIPT with ARGS on the master; returns the job's name (detach) or the last
    line to print. Raises JobFailed (exit 1) when the job or the script failed."""
    out, err = out or sys.stdout, err or sys.stderr
    if on_interrupt not in INTERRUPT:
        raise ImagebakeError(f"--on-interrupt {on_interrupt!r}: ask, kill or leave")
    if results and detach:
        raise ImagebakeError("--results waits for the job: not with --detach")
    tar = bundle(script, list(with_dirs or []))
    if results:
        _check_results_path(results)
    target = targets.get(record["target"])
    check_disco(target, record)
    argv = target.exec_argv(record, remote_command(script, args, detach, with_dirs),
                            user="disco")
    watch = Watch()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, lambda s: (
                 out.write(safe_text(s)), out.flush())), daemon=True),
             threading.Thread(target=_pump, args=(proc.stderr, lambda s: watch.take(s, err)),
                              daemon=True)]
    for pump in pumps:
        pump.start()
    try:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(tar)
            proc.stdin.close()
        rc = proc.wait()
    except KeyboardInterrupt:
        _interrupted(target, record, watch, on_interrupt, proc)
        raise
    for pump in pumps:
        pump.join(timeout=10)
    if rc == 97:
        raise JobFailed(f"could not unpack the job on the master: {_last(watch.stderr)}")
    name = watch.names[-1] if watch.names else None
    if detach:
        if not name:
            raise JobFailed(f"the script ended without submitting a job: "
                            f"{_last(watch.stderr) or f'exit {rc}'}")
        return name
    state = watch.final.get(name, "") if name else ""
    if name and state == "ready" and rc == 0:
        if results:
            count = write_results(target, record, name, results)
            return f"job {name} done; {count} result(s) written to {results}"
        return f"job {name} done"
    if not name:
        raise JobFailed(f"the job script failed before submitting a job: "
                        f"{_last(watch.stderr) or f'exit {rc}'}")
    if state == "active":  # the script ended without waiting; the job runs on
        return f"job {name} submitted and still running: invoke job-status --name " \
               f"{record['name']} {name}"
    if state == "ready":  # Disco finished the job; the script failed after it
        why = f"the script exited {rc} after the job: {_last(watch.stderr)}"
    else:
        why = jobs.failure_reason(jobs.events(target, record, name)) or _last(watch.stderr) \
            or f"Disco says {state or 'nothing'}; the script exited {rc}"
    raise JobFailed(f"job {name} failed: {why}")


def _interrupted(target, record: dict, watch: Watch, on_interrupt: str,
                 proc: subprocess.Popen) -> None:
    """Ctrl-C: stop the script on the master; kill the job too when asked (or --on-interrupt
    kill), else leave it running in Disco."""
    name = watch.names[-1] if watch.names else None
    kill = name is not None and (on_interrupt == "kill" or (
        on_interrupt == "ask" and _ask_kill(name)))
    if watch.pid:
        target.exec(record, f"kill {watch.pid} 2>/dev/null", user="disco")
    shown = safe_text(name or "", one_line=True)  # Disco's name for it: shown escaped
    if kill:
        target.exec(record, f"disco kill {shlex.quote(name)}", user="disco")
        print(f"job {shown} killed", file=sys.stderr)
    elif name:
        print(f"job {shown} left running: invoke job-status --name {record['name']} {shown}",
              file=sys.stderr)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _last(lines: list[str]) -> str:
    lines = [x for x in lines if x.strip() and "Warning" not in x and "warnings.warn" not in x]
    return safe_text(lines[-1].strip())[:200] if lines else ""


def check_disco(target, record: dict) -> None:
    rc, _ = target.exec(record, "command -v disco")
    if rc != 0:
        raise ImagebakeError(f"no Disco in the images of cluster {record['name']!r} (baked with "
                             "disco_source=none): there is nothing to run a job")


def _check_results_path(results: str) -> None:
    parent = Path(results).resolve().parent
    if not parent.is_dir():
        raise ImagebakeError(f"--results {results}: no directory {parent}")
    if Path(results).is_dir():
        raise ImagebakeError(f"--results {results}: a directory; give a file name")


RESULTS_CODE = (
    "import sys\n"
    "from disco.core import Disco, result_iterator\n"
    "for k, v in result_iterator(Disco().wait(sys.argv[1], timeout=60)):\n"
    "    sys.stdout.write('%s\\t%s\\n' % (k.decode() if isinstance(k, bytes) else k,"
    " v.decode() if isinstance(v, bytes) else v))\n")


def write_results(target, record: dict, name: str, path: str) -> int:
    """The job's results (result_iterator), one `key TAB value` line each, written to PATH
    (replaced at once, never half-written); returns how many."""
    argv = target.exec_argv(record, f"python3 -W ignore -c {shlex.quote(RESULTS_CODE)} "
                                     f"{shlex.quote(name)}", user="disco")
    tmp = Path(path).with_name(f".{Path(path).name}.imagebake-tmp")
    try:
        with open(tmp, "wb") as fh:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=fh,
                                  stderr=subprocess.PIPE, timeout=3600)
        if proc.returncode != 0:
            why = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise JobFailed(f"reading the results of {name} failed: "
                            f"{safe_text(why[-1]) if why else proc.returncode}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


# ---------------------------------------------------------------- following a job
def _api(target, record: dict, path: str):
    code = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
            "'http://127.0.0.1:8989' + sys.argv[1], timeout=20).read().decode())")
    rc, out = target.exec(record, f"python3 -c {shlex.quote(code)} {shlex.quote(path)}",
                          user="disco")
    try:
        return json.loads(out) if rc == 0 else None
    except ValueError:
        return None


def job_list(record: dict) -> list[list]:
    """[[when, status, name], ...], newest first (Disco's joblist)."""
    target = targets.get(record["target"])
    check_disco(target, record)
    return _api(target, record, "/disco/ctrl/joblist") or []


def _newest(record: dict, name: str | None) -> str:
    if name:
        return check_job_name(name)
    found = job_list(record)
    if not found:
        raise ImagebakeError(f"no job on cluster {record['name']!r}")
    return str(found[0][2])


def status(record: dict, name: str | None = None) -> tuple[str, bool]:
    """(one line: job, state, stages; whether it is not dead)."""
    name = _newest(record, name)
    target = targets.get(record["target"])
    info = _api(target, record, f"/disco/ctrl/jobinfo?name={name}")
    if not isinstance(info, dict):
        raise ImagebakeError(f"no job {name!r} on cluster {record['name']!r}")
    state = str(info.get("active"))
    line = f"job {name}: {state}: {stages(info.get('pipeline'))}"
    if state == "dead":
        line += f"; {jobs.failure_reason(jobs.events(target, record, name)) or 'failed'}"
    return safe_text(line, one_line=True), state != "dead"


def logs(record: dict, name: str | None = None) -> str:
    """Disco's events of the job, oldest first: `time host message` lines."""
    name = _newest(record, name)
    events = jobs.events(targets.get(record["target"]), record, name)
    if not events:
        raise ImagebakeError(f"no events for job {name!r} on cluster {record['name']!r}")
    return "\n".join(safe_text(f"{when} {host} {message}".rstrip())
                     for when, host, message in events)


def kill(record: dict, name: str | None = None) -> str:
    name = _newest(record, name)
    rc, out = targets.get(record["target"]).exec(record, f"disco kill {shlex.quote(name)}",
                                                   user="disco")
    if rc != 0:
        raise JobFailed(f"disco kill {name} failed: {_last(out.splitlines())}")
    return f"job {name} killed"
