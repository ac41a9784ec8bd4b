"""run and copy on many members at once (imagebake/targets/fleet.py), written once for
every target over Target.batch_argv. Here the "remote" side is a local shell per member
(a directory each), so no Docker is needed; tests/cluster/test_run_copy.py does it for real."""

from __future__ import annotations

import io
import json
import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagebake import state
from imagebake.errors import ImagebakeError
from imagebake.targets import fleet
from imagebake.targets.base import Target

ROOT = Path(__file__).resolve().parents[3]
INVOKE = Path(sys.executable).with_name("invoke")


class LocalTarget(Target):
    """Each member is a directory; its 'login' joins the command words and runs them in
    a shell there, as `ssh host WORDS` (or docker's `su -c`) does. Asks for a terminal
    with -t, as the docker and qemu targets do for an interactive login."""

    name = "local"

    def __init__(self, root: Path, refuse: str | None = None, prefix: str = "") -> None:
        self.root = root
        self.refuse = refuse
        self.prefix = prefix  # shell line run before the command, e.g. a ulimit
        self.argvs: list[list[str]] = []

    def check_node(self, record, node):
        host = Target.check_node(self, record, node)
        if host == self.refuse:
            raise ImagebakeError(f"the host key of {host} is not known")
        return host

    def _ssh_argv(self, record, host, command):
        folder = self.root / host
        folder.mkdir(exist_ok=True)
        argv = ["env", "-C", str(folder), f"NODE={host}", "-t", "sh", "-c",
                self.prefix + " ".join(command)]
        self.argvs.append(argv)
        return argv


RECORD = {"name": "demo", "target": "local",
          "nodes": [state.node(n) for n in ("node01", "node02", "node03")]}


@pytest.fixture
def target(tmp_path):
    return LocalTarget(tmp_path / "members")


@pytest.fixture(autouse=True)
def _members(tmp_path):
    (tmp_path / "members").mkdir()


def run(target, on, command, **kw):
    out = io.StringIO()
    outcome = fleet.run(target, RECORD, fleet.select(target, RECORD, on), command, out=out,
                        **kw)
    return outcome, out.getvalue()


# ------------------------------------------------------------------ choosing members
@pytest.mark.parametrize("on,chosen", [
    (None, ["master", "node01", "node02", "node03"]),
    ("all", ["master", "node01", "node02", "node03"]),
    ("slaves", ["node01", "node02", "node03"]),
    ("master", ["master"]),
    ("node03,node01", ["node01", "node03"]),
    ("node02, node02 ,master", ["master", "node02"]),
    ("master,slaves", ["master", "node01", "node02", "node03"]),
])
def test_on_chooses_members(target, on, chosen):
    assert fleet.select(target, RECORD, on) == chosen


@pytest.mark.parametrize("on,needle", [
    ("", "--on names no node"),
    (" , ", "--on names no node"),
    ("node01,,node02", "empty name"),
    ("node09", "no node 'node09'"),
    ("node01,nodeX", "no node 'nodeX'"),
    ("Master", "no node 'Master'"),
])
def test_on_refuses_an_empty_list_and_unknown_members(target, on, needle):
    with pytest.raises(ImagebakeError, match=needle):
        fleet.select(target, RECORD, on)
    assert target.argvs == []


def test_slaves_of_a_cluster_without_slaves_is_refused(target):
    with pytest.raises(ImagebakeError, match="has no slaves"):
        fleet.select(target, {"name": "solo", "nodes": []}, "slaves")


def test_the_targets_own_node_check_is_asked(tmp_path):
    target = LocalTarget(tmp_path / "members", refuse="node02")
    with pytest.raises(ImagebakeError, match="host key of node02"):
        fleet.select(target, RECORD, "all")


def test_members_are_the_master_and_the_records_node_names():
    # whatever the target keeps per node (an instance on EC2): one shape, state.Node
    record = {"name": "x", "nodes": [state.node("node01", id="i-1"), state.node("node03")]}
    assert fleet.members(record) == ["master", "node01", "node03"]


def test_batch_argv_drops_the_terminal_request_only():
    class T(Target):
        def _ssh_argv(self, record, host, command):
            return ["ssh", "-t", "-o", "X=1", "host", "-t", *command]

    argv = T().batch_argv(RECORD, "node01", ["sh", "-c", "'-t'"])
    assert argv == ["ssh", "-o", "X=1", "host", "sh", "-c", "'-t'"]


# ------------------------------------------------------------------ run
def test_run_prefixes_each_line_with_the_member_and_sums_up(target):
    outcome, out = run(target, "all", 'echo "hello from $NODE"; echo "two  spaces" >&2')
    lines = out.splitlines()
    for node in ("master", "node01", "node02", "node03"):
        assert f"{node:<6}: hello from {node}" in lines
        assert f"{node:<6}: two  spaces" in lines
    assert outcome.ok and outcome.summary() == "run on 4 nodes: 4 ok"


def test_run_fails_when_any_member_fails(target):
    outcome, _ = run(target, "all", '[ "$NODE" != node02 ] || exit 7')
    assert not outcome.ok
    assert [(r.node, r.code) for r in outcome.failed] == [("node02", 7)]
    assert outcome.summary() == "run on 4 nodes: 3 ok, 1 failed: node02 (exit 7)"


def test_run_is_one_shell_line_on_each_member_as_written(target):
    run(target, "node01", "echo a > f; echo b >> f; x='$HOME'; echo \"$x\" >> f")
    assert (target.root / "node01" / "f").read_text() == "a\nb\n$HOME\n"
    assert not (target.root / "master" / "f").exists()


def test_run_is_parallel(target):
    start = time.monotonic()
    outcome, _ = run(target, "all", "sleep 1")
    assert outcome.ok and time.monotonic() - start < 2.5


def test_run_gives_up_on_a_member_after_the_timeout(target):
    outcome, out = run(target, "node01,node02", '[ "$NODE" = node01 ] && sleep 30; true',
                       timeout=0.5)
    assert [(r.node, r.code) for r in outcome.failed] == [("node01", -1)]
    assert "node01: timed out after 0.5 s" in out
    assert "node01 (timed out)" in outcome.summary()


def test_run_reads_no_terminal_input(target):
    outcome, out = run(target, "master", "cat; echo done")
    assert outcome.ok and out.splitlines() == ["master: done"]


@pytest.mark.parametrize("command", [None, "", "   "])
def test_run_refuses_no_command(target, command):
    with pytest.raises(ImagebakeError, match="no command"):
        target.run(RECORD, "all", command)
    assert target.argvs == []


@pytest.mark.parametrize("timeout", ["abc", "0", "-5", "1e9"])
def test_run_refuses_a_bad_timeout(target, timeout):
    with pytest.raises(ImagebakeError, match="--timeout"):
        fleet.run(target, RECORD, ["master"], "true", timeout=timeout)
    assert target.argvs == []


def test_target_run_is_the_fleet(target, capsys):
    outcome = target.run(RECORD, "slaves", "echo $NODE")
    assert [r.node for r in outcome.results] == ["node01", "node02", "node03"]
    assert "node02: node02" in capsys.readouterr().out


# ------------------------------------------------------------------ copy
@pytest.fixture
def src(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 64 + b"no newline at the end")
    path.chmod(0o640)
    return path


def copy(target, on, src, dest, **kw):
    out = io.StringIO()
    outcome = fleet.copy(target, RECORD, fleet.select(target, RECORD, on), str(src), dest,
                         out=out, **kw)
    return outcome, out.getvalue()


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".imagebake-copy.*")]


def test_copy_puts_the_same_bytes_and_mode_on_every_member(target, src):
    for node in ("master", "node01", "node02", "node03"):
        (target.root / node / "sub").mkdir(parents=True)
    outcome, _ = copy(target, "all", src, "sub/data.out")
    assert outcome.ok and outcome.summary() == "copy on 4 nodes: 4 ok"
    for node in ("master", "node01", "node02", "node03"):
        out = target.root / node / "sub" / "data.out"
        assert out.read_bytes() == src.read_bytes()
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
        assert leftovers(target.root / node) == []


def test_copy_into_a_directory_keeps_the_name(target, src):
    (target.root / "node02" / "dir").mkdir(parents=True)
    outcome, _ = copy(target, "node02", src, "dir/")
    assert outcome.ok
    assert (target.root / "node02" / "dir" / "data.bin").read_bytes() == src.read_bytes()


def test_copy_replaces_an_existing_file(target, src):
    (target.root / "master").mkdir()
    (target.root / "master" / "f").write_text("old")
    assert copy(target, "master", src, "f")[0].ok
    assert (target.root / "master" / "f").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("dest", ["a b", "it's", "$(touch pwned)", "x; touch pwned", "-n",
                                  "`touch pwned`", "\"q\"", "*"])
def test_copy_quotes_the_destination(target, src, dest):
    outcome, out = copy(target, "node01", src, dest)
    assert outcome.ok, out
    folder = target.root / "node01"
    assert (folder / dest).read_bytes() == src.read_bytes()
    assert not (folder / "pwned").exists()


def test_a_failed_copy_changes_nothing(target, src):
    outcome, out = copy(target, "node01,node02", src, "missing-dir/f")
    assert [r.node for r in outcome.failed] == ["node01", "node02"]
    assert "copy on 2 nodes: 0 ok, 2 failed" in outcome.summary()
    for node in ("node01", "node02"):
        assert sorted(p.name for p in (target.root / node).iterdir()) == []


def test_a_copy_cut_off_midway_leaves_the_old_file_whole(tmp_path, src):
    target = LocalTarget(tmp_path / "members", prefix="ulimit -f 1; ")  # cat dies at 512 B
    (target.root / "node01").mkdir()
    (target.root / "node01" / "f").write_text("old")
    outcome, _ = copy(target, "node01", src, "f")
    assert not outcome.ok
    assert (target.root / "node01" / "f").read_text() == "old"
    assert leftovers(target.root / "node01") == []


@pytest.mark.parametrize("make,needle", [
    (lambda tmp: str(tmp / "nope"), "no such file"),
    (lambda tmp: str(tmp), "is a directory"),
    (lambda tmp: "", "no file to copy"),
    (lambda tmp: None, "no file to copy"),
    (lambda tmp: "/dev/null", "not a regular file"),
])
def test_copy_refuses_a_bad_source_and_touches_no_member(target, tmp_path, make, needle):
    with pytest.raises(ImagebakeError, match=needle):
        target.copy(RECORD, "all", make(tmp_path), "dest")
    assert target.argvs == []


@pytest.mark.parametrize("dest", [None, "", "  ", "a\nb"])
def test_copy_refuses_a_bad_destination(target, src, dest):
    for check in (target.check_copy, target.copy):
        with pytest.raises(ImagebakeError):
            check(RECORD, "all", str(src), dest)
    assert target.argvs == []


@pytest.mark.parametrize("on", ["", "node07", "node01,,node02"])
def test_copy_refuses_a_bad_node_list_and_touches_no_member(target, src, on):
    with pytest.raises(ImagebakeError):
        target.copy(RECORD, on, str(src), "dest")
    assert target.argvs == []
    assert list(target.root.iterdir()) == []


# ------------------------------------------------------------------ the CLI
@pytest.fixture
def cli(tmp_path):
    """invoke with a recorded docker cluster 'demo' and a fake `docker` that runs the
    member's shell line locally (in a directory per container)."""
    state = tmp_path / "state"
    (state / "clusters").mkdir(parents=True)
    (state / "clusters" / "demo.json").write_text(json.dumps(
        {"name": "demo", "target": "docker",
         "nodes": [{"name": "node01"}, {"name": "node02"}]}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text('#!/bin/sh\n'
                    '# docker exec [-i] [-t] CONTAINER su - disco -c LINE\n'
                    'for a; do case "$a" in imagebake-*) c=$a;; esac; last=$a; done\n'
                    'echo "$*" >> "$FAKE_LOG"\n'
                    'mkdir -p "$FAKE_ROOT/$c" && cd "$FAKE_ROOT/$c" && exec sh -c "$last"\n')
    fake.chmod(0o755)
    log = tmp_path / "docker.log"

    def call(*args):
        env = {**os.environ, "IMAGEBAKE_STATE_DIR": str(state),
               "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               "FAKE_ROOT": str(tmp_path / "containers"), "FAKE_LOG": str(log),
               "HOME": str(tmp_path)}
        env = {k: v for k, v in env.items() if not k.startswith("INVOKE_")}
        proc = subprocess.run([str(INVOKE), *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        proc.docker_calls = log.read_text().splitlines() if log.exists() else []
        return proc

    call.root = tmp_path / "containers"
    return call


def test_cli_run_passes_the_command_after_the_double_dash(cli):
    proc = cli("run", "--name", "demo", "--on", "slaves", "--", "echo", "hi;", "echo", "$0")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "node01: hi" in lines and "node02: hi" in lines
    assert lines[-1] == "run on 2 nodes: 2 ok"
    assert not any("imagebake-demo-master" in c for c in proc.docker_calls)


def test_cli_run_exit_status_is_non_zero_when_a_member_fails(cli):
    proc = cli("run", "--name", "demo", "--", "test", "-e", "/nonexistent-file")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("run on 3 nodes: 0 ok, 3 failed")


def test_cli_copy_takes_src_and_dest_as_arguments(cli, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("payload\n")
    proc = cli("copy", "--name", "demo", str(src), "out.txt", "--on", "node02")
    assert proc.returncode == 0, proc.stderr
    assert (cli.root / "imagebake-demo-node02" / "out.txt").read_text() == "payload\n"
    assert not (cli.root / "imagebake-demo-node01").exists()


@pytest.mark.parametrize("args,needle", [
    (["run", "--name", "demo", "--on", "node09", "--", "true"], "no node 'node09'"),
    (["run", "--name", "demo", "--on", "", "--", "true"], "--on names no node"),
    (["run", "--name", "demo"], "no command"),
    (["run", "--name", "demo", "--timeout", "x", "--", "true"], "--timeout"),
    (["run", "--name", "nosuch", "--", "true"], "no cluster named"),
    (["copy", "--name", "demo", "/nonexistent", "dest"], "no such file"),
    (["copy", "--name", "demo", "/tmp", "dest"], "is a directory"),
    (["copy", "--name", "demo", "tasks.py"], "no destination"),
    (["copy", "--name", "demo"], "no file to copy"),
    (["copy", "--name", "demo", "tasks.py", "dest", "--on", "nodeX"], "no node 'nodeX'"),
    (["copy", "--name", "demo", "tasks.py", "dest", "--on", ","], "--on names no node"),
])
def test_cli_bad_input_is_one_line_exit_2_and_changes_nothing(cli, args, needle):
    proc = cli(*args)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert proc.docker_calls == [] and not cli.root.exists()


# ------------------------------------------------------------------ invoke ssh COMMAND
@pytest.mark.parametrize("line,printed", [
    ("echo 'a;id;b'", "a;id;b"),
    ('printf "%s|" "x y" z', "x y|z|"),
    ("echo $((6*7)) && echo ok", "42\nok"),
])
def test_cli_ssh_runs_the_command_line_as_written(cli, line, printed):
    """The user's quoting survives: the line reaches the member's shell whole (quoted once
    on the way out), so the quoted `a;id;b` is one word and `id` never runs."""
    proc = cli("ssh", "--name", "demo", "node01", line)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip("\n") == printed, proc.stdout


# ------------------------------------------------------------------ who runs it (N6)
def remote_user(argv: list[str], login: str) -> str:
    """Who runs the command of ARGV on the member: the user `su -`/`sudo -u` switches to,
    else LOGIN (the user the connection logs in as). ssh argv: the words after the
    destination, joined and split again as the remote login shell does."""
    if argv[0] == "docker":
        words = argv[argv.index("su"):]
    else:
        destination = max(i for i, a in enumerate(argv) if "@" in a and not a.startswith("-"))
        words = shlex.split(" ".join(argv[destination + 1:]))
    if words[:2] == ["su", "-"]:
        return words[2]
    if words and words[0] == "sudo":
        flags = words[1:words.index("sh")]
        for i, flag in enumerate(flags):
            if flag in ("-u", "-iu", "-niu"):
                return flags[i + 1]
    return login


def test_copy_drops_the_set_id_bits(target, tmp_path):
    """A copied file keeps its permission bits but never setuid, setgid or sticky."""
    src = tmp_path / "tool"
    src.write_bytes(b"#!/bin/sh\n")
    os.chmod(src, 0o6755)
    assert stat.S_IMODE(src.stat().st_mode) == 0o6755
    outcome, _ = copy(target, "node01", src, "tool")
    assert outcome.ok
    assert stat.S_IMODE((target.root / "node01" / "tool").stat().st_mode) == 0o755


def test_docker_and_qemu_run_and_copy_as_disco(tmp_path):
    from imagebake.targets.docker.cluster import DockerTarget
    from imagebake.targets.qemu.cluster import QemuTarget

    words = fleet.shell_words("id -un")
    docker = DockerTarget().batch_argv(RECORD, "node01", words)
    assert remote_user(docker, "root") == "disco"
    record = {"name": "vm", "target": "qemu", "nodes": [state.node("node01")],
              "dir": str(tmp_path),
              "ports": {"ssh": 2222}, "login": "ubuntu", "vms": {"node01": {"ip": "10.0.0.2"}}}
    qemu = QemuTarget().batch_argv(record, "node01", words)
    assert remote_user(qemu, "ubuntu") == "disco"


def test_run_output_reaches_the_terminal_escaped(target):
    # a member's output may carry escape sequences (retitle, clear screen), CR and BEL:
    # shown as visible text; tabs stay
    outcome, out = run(target, "node01",
                       r"printf 'a\033]0;pwned\007\033[2J\rb\tc\001\177\n'")
    assert outcome.ok
    assert out.splitlines() == ["node01: a\\x1b]0;pwned\\x07\\x1b[2J\\rb\tc\\x01\\x7f"]
