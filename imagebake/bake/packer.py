"""A thin typed wrapper over `packer -machine-readable` (Packer 1.6.6 and >= 1.7).

Machine-readable lines are `timestamp,target,type,data...`; commas inside a
field are written `%!(PACKER_COMMA)` and newlines as a literal backslash-n.
`parse_line` turns one line into a typed event, `EventStream` adds the
build start/end events Packer only says in prose, and `build` streams events
to a callback and to a log file under build/logs/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from ..errors import ImagebakeError

INSTALL_HINT = "install Packer >= 1.6.6 (https://developer.hashicorp.com/packer/install)"
PLUGINS_DIR = "init"  # packer/init/plugins.pkr.hcl: required_plugins, read by `packer init` only
# Packer asks checkpoint.hashicorp.com for news unless told not to.
QUIET_ENV = {"CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"}

# "==> docker.master: Provisioning ..." (say), "    docker.master: text" (message),
# "    docker.master (docker-tag): text" (post-processor), "--> docker.master: ..." (artifact)
_BUILD_PREFIX = re.compile(
    r"^(?:==> |--> |\s+)([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+)(?: \(([^)]*)\))?: ?(.*)$", re.S)
_BUILD_END = re.compile(
    r"^Build '([^']+)' (finished|errored)(?: after (.*?))?(?:: (.*)|\.)?$", re.S)
# Lines of an HCL diagnostic that say nothing to a user on one line.
_NOISE = re.compile(r"\(source code not available\)|on .* line \d+:|This was checked by .*")
_VERSION = re.compile(r"Packer v?(\d+)\.(\d+)\.(\d+)")


# ------------------------------------------------------------------ events
@dataclass(frozen=True)
class Ui:
    """ui say / message / error; build is the build the text is about, if any."""

    timestamp: int
    level: str  # say | message | error
    text: str
    build: str | None = None
    text_only: str = ""  # text without the "==> build:" prefix


@dataclass(frozen=True)
class Artifact:
    timestamp: int
    build: str
    index: int
    key: str  # builder-id | id | string | files-count | file | end
    value: str


@dataclass(frozen=True)
class ArtifactCount:
    timestamp: int
    build: str
    count: int


@dataclass(frozen=True)
class BuildError:
    """Packer's `error` line for one build (the reason it failed)."""

    timestamp: int
    build: str
    message: str


@dataclass(frozen=True)
class ErrorCount:
    timestamp: int
    count: int


@dataclass(frozen=True)
class BuildStart:
    timestamp: int
    build: str


@dataclass(frozen=True)
class BuildEnd:
    timestamp: int
    build: str
    ok: bool
    duration: str = ""
    error: str = ""


@dataclass(frozen=True)
class Other:
    """Any other machine-readable line (version, template-*, ...), or a raw line."""

    timestamp: int
    target: str
    type: str
    data: tuple[str, ...]


Event = Union[Ui, Artifact, ArtifactCount, BuildError, ErrorCount, BuildStart, BuildEnd, Other]


def unescape(field_text: str) -> str:
    return (field_text.replace("%!(PACKER_COMMA)", ",")
            .replace("\\n", "\n").replace("\\r", "\r"))


def parse_line(line: str) -> Event | None:
    """One machine-readable line -> one event (None for a blank line)."""
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    parts = line.split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return Other(0, "", "raw", (line,))
    ts, target, kind = int(parts[0]), parts[1], parts[2]
    data = tuple(unescape(p) for p in parts[3:])
    if kind == "ui" and len(data) >= 2:
        text = ",".join(data[1:])
        build, rest = None, text
        if data[0] != "say" or text.startswith("==> ") or text.startswith("--> "):
            m = _BUILD_PREFIX.match(text)
            if m:
                build, rest = m.group(1), m.group(3)
        return Ui(ts, data[0], text, build, rest.strip())
    if kind == "artifact" and len(data) >= 2:
        value = ",".join(data[2:]) if len(data) > 2 else ""
        return Artifact(ts, target, int(data[0]), data[1], value)
    if kind == "artifact-count" and data:
        return ArtifactCount(ts, target, int(data[0]))
    if kind == "error" and target:
        return BuildError(ts, target, ",".join(data))
    if kind == "error-count" and data:
        return ErrorCount(ts, int(data[0]))
    return Other(ts, target, kind, data)


class EventStream:
    """Parses lines in order and adds BuildStart / BuildEnd events."""

    def __init__(self) -> None:
        self.started: set[str] = set()

    def feed(self, line: str) -> list[Event]:
        event = parse_line(line)
        if event is None:
            return []
        out: list[Event] = []
        build = getattr(event, "build", None)
        if isinstance(event, Ui) and build is None:
            m = _BUILD_END.match(event.text)
            if m:
                ok = m.group(2) == "finished"
                end = BuildEnd(event.timestamp, m.group(1), ok, (m.group(3) or "").strip(),
                               "" if ok else (m.group(4) or "").strip())
                return [event, end]
        if build and build not in self.started and not isinstance(event, (Artifact, ArtifactCount)):
            self.started.add(build)
            out.append(BuildStart(event.timestamp, build))
        out.append(event)
        return out


def parse(lines: Iterable[str]) -> list[Event]:
    stream = EventStream()
    return [e for line in lines for e in stream.feed(line)]


# ------------------------------------------------------------------ results
@dataclass
class BuildResult:
    ok: bool
    log_path: Path
    seconds: float
    # build name -> artifact index -> {key: value}
    artifacts: dict[str, dict[int, dict[str, str]]] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # build -> one-line reason
    containers: dict[str, str] = field(default_factory=dict)  # build -> docker container id
    first_error: str = ""


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summarize(events: Iterable[Event], log_path: Path, seconds: float = 0.0,
              returncode: int = 0) -> BuildResult:
    """Fold events into a BuildResult; first_error is the most useful single line."""
    result = BuildResult(ok=returncode == 0, log_path=log_path, seconds=seconds)
    last_error_ui: dict[str, str] = {}
    first_ui_error = ""
    for e in events:
        if isinstance(e, Artifact):
            result.artifacts.setdefault(e.build, {}).setdefault(e.index, {})[e.key] = e.value
        elif isinstance(e, BuildEnd):
            if e.ok:
                result.finished.append(e.build)
            else:
                result.failed.setdefault(e.build, e.error)
        elif isinstance(e, BuildError):
            result.failed.setdefault(e.build, e.message)
        elif isinstance(e, Ui):
            if e.build and e.text_only.startswith("Container ID: "):
                result.containers[e.build] = e.text_only.split(": ", 1)[1].strip()
            if e.level == "error":
                if e.build and e.text_only:
                    # our provision scripts say "[imagebake step] error: ..." on stderr
                    if "error" in e.text_only.lower() or e.build not in last_error_ui:
                        last_error_ui[e.build] = e.text_only
                if not first_ui_error and not e.text.startswith(("\n==> Some builds", "Build '")):
                    first_ui_error = e.text
    if result.failed:
        result.ok = False
        build, reason = next(iter(result.failed.items()))
        detail = last_error_ui.get(build, "")
        line = f"{build}: {reason}" if reason else build
        if detail and detail not in reason:
            line += f" ({detail})"
        result.first_error = _one_line(line)
    elif not result.ok:
        result.first_error = (_first_error(first_ui_error) if first_ui_error
                              else f"packer exited with code {returncode}")
    return result


# ------------------------------------------------------------------ running packer
def packer_bin() -> str:
    path = shutil.which("packer")
    if path is None:
        raise ImagebakeError(f"packer not found on PATH: {INSTALL_HINT}")
    return path


def _env() -> dict[str, str]:
    return {**os.environ, **QUIET_ENV}


def _var_args(variables: Mapping[str, object]) -> list[str]:
    args = []
    for key in sorted(variables):
        value = variables[key]
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, Mapping):
            text = "{" + ", ".join(f'{k} = "{v}"' for k, v in sorted(value.items())) + "}"
        else:
            text = str(value)
        args += ["-var", f"{key}={text}"]
    return args


def _run(args: Sequence[str], cwd: Path | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([packer_bin(), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, env=_env())
    except subprocess.TimeoutExpired:
        raise ImagebakeError(f"packer {args[0]} did not finish within {timeout:.0f} s") from None


def version() -> tuple[int, int, int]:
    """(major, minor, patch) of the packer on PATH."""
    proc = _run(["version"], timeout=60)
    m = _VERSION.search(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not m:
        output = _one_line(proc.stdout + proc.stderr)
        raise ImagebakeError(f"cannot tell the Packer version: {output}")
    major, minor, patch = (int(g) for g in m.groups())
    return major, minor, patch


def needs_init(ver: tuple[int, int, int]) -> bool:
    """Packer >= 1.7 installs the docker and amazon plugins with `packer init`."""
    return ver >= (1, 7, 0)


def init(template_dir: Path) -> bool:
    """`packer init TEMPLATE_DIR/init` on Packer >= 1.7; False (nothing done) on 1.6."""
    if not needs_init(version()):
        return False
    proc = _run(["init", str(Path(template_dir) / PLUGINS_DIR)], timeout=600)
    if proc.returncode != 0:
        raise ImagebakeError(f"packer init failed: {_first_error(proc.stdout + proc.stderr)}")
    return True


def _first_error(output: str) -> str:
    """The first `Error: ...` block of human-readable Packer output, as one line."""
    lines = [ln for ln in output.splitlines()]
    for i, ln in enumerate(lines):
        if ln.startswith("Error") or ln.startswith("* "):
            block = [ln]
            for nxt in lines[i + 1:]:
                if nxt.startswith("Error"):
                    break
                text = nxt.strip()
                if text and not _NOISE.fullmatch(text):
                    block.append(text)
            return _one_line(" ".join(block))
    return _one_line(output.strip() or "no output")


def validate(template_dir: Path, variables: Mapping[str, object] | None = None,
             only: Sequence[str] = (), syntax_only: bool = False) -> None:
    """Raise ImagebakeError (one line) unless `packer validate` accepts the templates."""
    args = ["validate"]
    if syntax_only:
        args.append("-syntax-only")
    if only:
        args.append("-only=" + ",".join(only))
    args += _var_args(variables or {})
    proc = _run([*args, str(template_dir)])
    if proc.returncode != 0:
        raise ImagebakeError(f"packer validate failed: {_first_error(proc.stdout + proc.stderr)}")


def fmt_check(template_dir: Path) -> list[str]:
    """Files `packer fmt -check` would rewrite (empty: all formatted)."""
    proc = _run(["fmt", "-check", str(template_dir)])
    if proc.returncode == 0:
        return []
    files = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip().endswith(".hcl")]
    if not files:
        raise ImagebakeError(f"packer fmt failed: {_first_error(proc.stdout + proc.stderr)}")
    return files


def new_log_path(log_dir: Path, what: str = "build") -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = log_dir / f"packer-{what}-{stamp}.log"
    n = 1
    while path.exists():
        n += 1
        path = log_dir / f"packer-{what}-{stamp}-{n}.log"
    return path


def build(template_dir: Path, only: Sequence[str], variables: Mapping[str, object],
          on_event: Callable[[Event], None] | None = None, log_dir: Path = Path("build/logs"),
          cwd: Path | None = None, raise_on_error: bool = True) -> BuildResult:
    """`packer build -machine-readable`, streaming events; raises one line on failure.

    With raise_on_error=False the failed result is returned instead (the caller
    records what did succeed, then raises).
    """
    log_path = new_log_path(Path(log_dir))
    args = [packer_bin(), "build", "-machine-readable", "-color=false"]
    if only:
        args.append("-only=" + ",".join(only))
    args += [*_var_args(variables), str(template_dir)]
    stream = EventStream()
    events: list[Event] = []
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("# " + " ".join(args) + "\n")
        log.flush()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, cwd=cwd, env=_env(), start_new_session=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                for event in stream.feed(line):
                    events.append(event)
                    if on_event is not None:
                        on_event(event)
            returncode = proc.wait()
        except BaseException:
            # Ctrl-C or a callback error: let Packer clean up (it removes its
            # containers / instances on SIGINT), then re-raise.
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            raise
    result = summarize(events, log_path, time.monotonic() - start, returncode)
    if not result.ok and raise_on_error:
        raise ImagebakeError(f"packer build failed: {result.first_error} (log: {log_path})")
    return result
