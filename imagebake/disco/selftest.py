"""`invoke disco-selftest`: Disco's own test suite, module by module, on a running cluster.

Disco 0.5.4 ships its tests in the source tree (tests/, 44 test_*.py modules), which the
vendored bake keeps at /usr/local/src/disco/tests on the master. Each module runs on the
master as the `disco` user in a fresh copy of that directory, through
selftest_remote.py (Disco's own TestLoader and settings), bounded by a timeout; the
host prints one line per module as it ends, then the table (module, result, seconds).
A module is skipped only for a reason outside Disco, named in SKIPS; a test too big for a
small cluster (ON_REQUEST) is skipped in a whole-suite run, with its figures, and runs when
its module is named (--module).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImagebakeError
from ..targets.base import Target

SOURCE_TREE = "/usr/local/src/disco"  # where 30-disco.sh unpacks Disco (tests/, examples/)
WORK = "/tmp/imagebake-disco-selftest"
REMOTE_RUNNER = Path(__file__).with_name("selftest_remote.py")
MODULE_TIMEOUT = 300  # seconds per module: a hung job is a failure, never a hang

# What cannot pass for a reason outside Disco, with the reason (shown in the table): a whole
# module by its name, or one test by its id (module.Class.method). Nothing else is skipped.
OUTSIDE_NETWORK = ("needs the outside network (http://discoproject.org/media/text/chekhov.txt, "
                   "which is gone); the cluster has no route out")
SKIPS: dict[str, str] = {
    "test_external": ("compiles a C worker (tests/test_external.c) with gcc; the images carry no "
                      "C compiler"),
    "test_ddfs.DDFSWriteTestCase.test_chunk": OUTSIDE_NETWORK,
    "test_examples.ExamplesTestCase.test_chunk": OUTSIDE_NETWORK,
    "test_examples.ExamplesTestCase.test_grep": OUTSIDE_NETWORK,
    "test_examples.ExamplesTestCase.test_wordcount": OUTSIDE_NETWORK,
}
# Too big for a small cluster: skipped, with this reason, unless its module is named
# (--module test_50k). Figures: docs/bake.md, "test_50k" (probe and the 50k run itself).
ON_REQUEST: dict[str, str] = {
    "test_50k.ManyMapTestCase.test_50k": (
        "host size: 50,000 map tasks, a Python process each, 0.26-0.31 CPU-s per task here "
        "(Python 3.11): 3.6-4.3 CPU-hours, ~2 h with both cores of a 2-core host free (a "
        "60-min run here ended 4,030 tasks in); run it alone (--module test_50k --timeout "
        "3600) on 6+ free cores"),
}


@dataclass
class ModuleResult:
    module: str
    status: str  # passed, failed, timeout, skipped
    seconds: float
    run: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "skipped")


def parse_timeout(value: object) -> int:
    """--timeout: whole seconds per module, 10 to 3600 (default MODULE_TIMEOUT)."""
    if value is None or value == "":
        return MODULE_TIMEOUT
    try:
        seconds = int(str(value))
    except ValueError:
        seconds = 0
    if not 10 <= seconds <= 3600:
        raise ImagebakeError(f"--timeout {value!r}: expected whole seconds from 10 to 3600")
    return seconds


def parse_result(module: str, rc: int, output: str, seconds: float,
                 timeout: int) -> ModuleResult:
    """The JSON line selftest_remote.py printed last, or why there is none."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                found = json.loads(line)
            except ValueError:
                continue
            if found.get("module") != module:
                continue
            bad = found.get("failures", 0) + found.get("errors", 0)
            status = "passed" if rc == 0 and not bad and found.get("run", 0) else "failed"
            return ModuleResult(module, status, seconds, found.get("run", 0),
                                found.get("failures", 0), found.get("errors", 0),
                                found.get("skipped", 0), found.get("detail", ""))
    if rc in (124, 137):
        return ModuleResult(module, "timeout", seconds, detail=f"no end within {timeout}s")
    tail = [x for x in output.splitlines() if x.strip()]
    return ModuleResult(module, "failed", seconds,
                        detail=(tail[-1][:300] if tail else f"exit code {rc}"))


def table(results: Iterable[ModuleResult]) -> str:
    """Fixed-width table: module, result (tests run), seconds, and a note for the rest."""
    results = list(results)
    width = max([len("module")] + [len(r.module) for r in results])
    lines = [f"{'module':<{width}}  {'result':<26}  {'seconds':>7}  note"]
    for r in results:
        counts = r.status
        if r.run:
            ok = r.run - r.failures - r.errors - r.skipped
            counts += f" ({ok}/{r.run}" + (f", {r.skipped} skipped)" if r.skipped else ")")
        note = "" if r.status == "passed" and not r.skipped else r.detail
        lines.append(f"{r.module:<{width}}  {counts:<26}  {r.seconds:>7.1f}  {note}".rstrip())
    passed = sum(1 for r in results if r.status == "passed")
    skipped = sum(1 for r in results if r.status == "skipped")
    lines.append(f"{passed} passed, {skipped} skipped, {len(results) - passed - skipped} "
                 f"failed of {len(results)} modules")
    return "\n".join(lines)


def prepare(target: Target, record: dict) -> list[str]:
    """A fresh copy of Disco's tests on the master and the runner beside it; returns the
    module names. One line if the images carry no Disco or no test suite."""
    rc, _ = target.exec(record, "command -v disco")
    if rc != 0:
        raise ImagebakeError(f"no Disco in the images of cluster {record['name']!r} (baked "
                             "without it): there is no test suite to run")
    rc, out = target.exec(
        record, f"test -d {SOURCE_TREE}/tests && rm -rf {WORK} && mkdir -p {WORK} && "
                f"cp -r {SOURCE_TREE}/tests {SOURCE_TREE}/examples {WORK}/ && ls {WORK}/tests",
        user="disco")
    if rc != 0:
        raise ImagebakeError(f"no Disco test suite at {SOURCE_TREE}/tests on the master (only "
                             "the vendored bake keeps Disco's source tree)")
    with open(REMOTE_RUNNER, "rb") as code:
        target.exec(record, f"cat > {WORK}/runner.py", user="disco", stdin=code)
    return sorted(name[:-3] for name in out.split()
                  if name.startswith("test_") and name.endswith(".py"))


def run_module(target: Target, record: dict, module: str,
               timeout: int = MODULE_TIMEOUT, named: bool = False) -> ModuleResult:
    """Run MODULE; NAMED (asked for by --module) runs its ON_REQUEST tests too."""
    if module in SKIPS:
        return ModuleResult(module, "skipped", 0.0, detail=SKIPS[module])
    chosen = {**SKIPS, **({} if named else ON_REQUEST)}
    skips = " ".join(shlex.quote(f"{test}={why}") for test, why in chosen.items()
                     if test.startswith(module + "."))
    started = time.monotonic()
    try:
        rc, out = target.exec(
            record, f"cd {WORK}/tests && timeout -s KILL {int(timeout)} python3 {WORK}/runner.py "
                    f"{shlex.quote(module)} {skips} 2>&1", user="disco")
    except subprocess.TimeoutExpired:  # the target's own wait (3600 s) ended first
        rc, out = 137, ""
    result = parse_result(module, rc, out, round(time.monotonic() - started, 1), timeout)
    if result.status == "timeout":
        kill_jobs(target, record)
    return result


def kill_jobs(target: Target, record: dict) -> None:
    """Kill the jobs a timed-out module left running, so the next module starts clean."""
    target.exec(record, "disco jobs -S 2>/dev/null | awk -F'\\t' '$2==\"active\"{print $1}' "
                        "| xargs -r disco kill", user="disco")


def selftest(record: dict, modules: list[str] | None = None, timeout: int = MODULE_TIMEOUT,
             on_result: Callable[[ModuleResult], None] | None = None) -> list[ModuleResult]:
    """Run Disco's suite (or MODULES of it) on the cluster of RECORD."""
    from .. import targets

    target = targets.get(record["target"])
    available = prepare(target, record)
    chosen = modules or available
    unknown = [m for m in chosen if m not in available]
    if unknown:
        raise ImagebakeError(f"no module {unknown[0]!r} in Disco's test suite (e.g. "
                             f"{', '.join(available[:3])})")
    results = []
    for module in chosen:
        result = run_module(target, record, module, timeout, named=modules is not None)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
