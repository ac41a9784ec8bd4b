"""Run a command or copy a file on many members of a cluster at once, for every target.

Written once over the interface every target already has: Target.batch_argv (its
ssh_argv without a terminal) reaches one member over the target's own pinned
connection (docker exec, ssh with the cluster's known_hosts), as disco on every
target (EC2's login user ubuntu switches with sudo, as qemu's does). Each member is one
subprocess; a bounded thread pool runs them side by side.

    nodes = fleet.select(target, record, "slaves")
    outcome = fleet.run(target, record, nodes, "uptime")    # prints "node01: ..." lines
    outcome = fleet.copy(target, record, nodes, "data.csv", "/tmp/data.csv")
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from .. import state
from ..errors import ImagebakeError
from ..terminal import safe_text

MAX_PARALLEL = 16  # members reached at once
DEFAULT_TIMEOUT = 3600.0  # seconds one member may take


@dataclass
class Result:
    node: str
    code: int  # the remote exit status; 255 when the connection failed; -1 on timeout
    output: str = ""


@dataclass
class Outcome:
    verb: str
    results: list[Result] = field(default_factory=list)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.code != 0]

    @property
    def ok(self) -> bool:
        return bool(self.results) and not self.failed

    def summary(self) -> str:
        total, bad = len(self.results), self.failed
        line = f"{self.verb} on {total} node{'s' if total != 1 else ''}: {total - len(bad)} ok"
        if bad:
            reasons = ", ".join(f"{r.node} ({_reason(r.code)})" for r in bad)
            line += f", {len(bad)} failed: {reasons}"
        return line


def _reason(code: int) -> str:
    return "timed out" if code == -1 else f"exit {code}"


# ------------------------------------------------------------------ which members
def members(record: dict) -> list[str]:
    """Every member's name, master first: master, node01, node02 ... (state.Node)."""
    return ["master", *state.node_names(record)]


def select(target: Any, record: dict, on: str | None = "all") -> list[str]:
    """The members --on names: all (default), slaves, master, or a comma-separated list
    of names (which may use all, slaves and master too); duplicates once, master first.
    One line when the list is empty or names a member the cluster does not have."""
    spec = "all" if on is None else str(on)
    known = members(record)
    chosen: list[str] = []
    words = [w.strip() for w in spec.split(",")]
    if not any(words):
        raise ImagebakeError("--on names no node: use all, slaves, master or node01,node02")
    for word in words:
        if not word:
            raise ImagebakeError(f"--on {spec!r} has an empty name between commas")
        if word == "all":
            chosen += known
        elif word == "slaves":
            if len(known) == 1:
                raise ImagebakeError(f"cluster {record['name']!r} has no slaves")
            chosen += known[1:]
        elif word in known:
            chosen.append(word)
        else:
            raise ImagebakeError(f"no node {word!r} in cluster {record['name']!r} "
                                 f"(members: {', '.join(known)})")
    ordered = [n for n in known if n in chosen]
    for node in ordered:  # the target's own check (EC2: the host key is pinned)
        target.check_node(record, node)
    return ordered


# ------------------------------------------------------------------ checks
def check_command(command: str | None) -> str:
    if command is None or not str(command).strip():
        raise ImagebakeError("no command to run: invoke run --name NAME [--on ...] -- COMMAND")
    return str(command)


def check_timeout(value: Any) -> float:
    try:
        seconds = float(DEFAULT_TIMEOUT if value is None else value)
    except (TypeError, ValueError):
        raise ImagebakeError(f"--timeout must be a number of seconds, not {value!r}") from None
    if not 0 < seconds <= 86400:
        raise ImagebakeError(f"--timeout must be between 0 and 86400 seconds, not {value!r}")
    return seconds


def check_source(src: str | None) -> str:
    """SRC must be a readable regular file (a directory is refused: one file per copy)."""
    if not src:
        raise ImagebakeError("no file to copy: invoke copy --name NAME SRC DEST")
    try:
        mode = os.stat(src).st_mode
    except FileNotFoundError:
        raise ImagebakeError(f"no such file: {src}") from None
    except OSError as exc:
        raise ImagebakeError(f"cannot read {src}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise ImagebakeError(f"{src} is a directory: copy one file (tar it first)")
    if not stat.S_ISREG(mode):
        raise ImagebakeError(f"{src} is not a regular file")
    if not os.access(src, os.R_OK):
        raise ImagebakeError(f"cannot read {src}: permission denied")
    return src


def check_dest(dest: str | None) -> str:
    if not dest or not str(dest).strip():
        raise ImagebakeError("no destination: invoke copy --name NAME SRC DEST")
    if "\0" in dest or "\n" in dest:
        raise ImagebakeError(f"invalid destination path {dest!r}")
    return dest


def shell_words(line: str) -> list[str]:
    """Command words that run the shell LINE as written, whether a target joins them for
    `su -c` (docker) or the remote login shell splits them again (ssh): LINE is quoted
    once, here, and read once, by the member's shell (`invoke ssh`, run and copy)."""
    return ["sh", "-c", shlex.quote(line)]


def copy_script(dest: str, basename: str, mode: int) -> str:
    """The remote shell line that stores stdin at DEST (into DEST/BASENAME when DEST is
    a directory): written under a temporary name beside it, then renamed, so a reader
    never sees half a file and a failed copy leaves the old one in place."""
    d, b = shlex.quote(dest), shlex.quote(basename)
    return (f'd={d}; if [ -d "$d" ]; then d="${{d%/}}"/{b}; fi; '
            'tmp=$(mktemp "$(dirname -- "$d")/.imagebake-copy.XXXXXX") || exit 1; '
            f'if cat > "$tmp" && chmod {mode:o} "$tmp" && mv -f -- "$tmp" "$d"; '
            'then exit 0; else rm -f -- "$tmp"; exit 1; fi')


# ------------------------------------------------------------------ acting
class _Printer:
    """Each member's lines prefixed with its name; whole lines, never interleaved, with
    control characters shown escaped (the member's output never steers the terminal)."""

    def __init__(self, nodes: list[str], out: TextIO | None) -> None:
        self.width = max(len(n) for n in nodes)
        self.out = out
        self.lock = threading.Lock()

    def line(self, node: str, text: str) -> None:
        out = self.out or sys.stdout
        with self.lock:
            out.write(f"{node:<{self.width}}: {safe_text(text)}\n")
            out.flush()


def _one(argv: list[str], node: str, stdin: Any, timeout: float,
         printer: _Printer) -> Result:
    try:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except OSError as exc:
        printer.line(node, f"cannot start {argv[0]}: {exc.strerror}")
        return Result(node, 255, str(exc))
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    lines = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text)
            printer.line(node, text)
        code = proc.wait()
    finally:
        timer.cancel()
    if timed_out.is_set():
        printer.line(node, f"timed out after {timeout:g} s")
        code = -1
    return Result(node, code, "\n".join(lines))


def _fan_out(target: Any, record: dict, nodes: list[str], verb: str,
             remote: str, timeout: float, out: TextIO | None,
             open_stdin: Callable[[], Any] | None = None) -> Outcome:
    if not nodes:
        raise ImagebakeError("no node chosen")
    argvs = {n: target.batch_argv(record, n, shell_words(remote)) for n in nodes}
    printer = _Printer(nodes, out)

    def work(node: str) -> Result:
        if open_stdin is None:
            return _one(argvs[node], node, subprocess.DEVNULL, timeout, printer)
        with open_stdin() as handle:
            return _one(argvs[node], node, handle, timeout, printer)

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(nodes))) as pool:
        results = list(pool.map(work, nodes))
    return Outcome(verb, results)


def run(target: Any, record: dict, nodes: list[str], command: str,
        timeout: Any = None, out: TextIO | None = None) -> Outcome:
    """COMMAND (a shell line) on every node in NODES at once; output lines prefixed."""
    command, seconds = check_command(command), check_timeout(timeout)
    return _fan_out(target, record, nodes, "run", command, seconds, out)


def copy(target: Any, record: dict, nodes: list[str], src: str, dest: str,
         timeout: Any = None, out: TextIO | None = None) -> Outcome:
    """The local file SRC to DEST on every node in NODES at once (streamed over each
    member's connection, permission bits kept but no set-id bits, replaced atomically)."""
    src, dest, seconds = check_source(src), check_dest(dest), check_timeout(timeout)
    mode = stat.S_IMODE(os.stat(src).st_mode) & 0o777  # never setuid, setgid or sticky
    script = copy_script(dest, os.path.basename(src), mode)
    return _fan_out(target, record, nodes, "copy", script, seconds, out,
                    open_stdin=lambda: open(src, "rb"))
