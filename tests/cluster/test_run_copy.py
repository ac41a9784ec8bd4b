"""`invoke run`, `invoke copy` and `invoke ssh NODE CMD` on a real local cluster: every
chosen member runs the command (as disco, over the target's own connection), output
prefixed by its name; a file arrives byte for byte on the chosen members only.

Its own cluster ("runcopy", 2 slaves), made and destroyed by the launcher fixture."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import sh

NAME = "runcopy"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rc(launcher):
    return launcher(NAME, 2)


def invoke(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_run_on_every_member_prefixes_its_output(rc):
    proc = invoke("run", "--name", NAME, "--", "echo", "$(hostname)", "$(id", "-un)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert sorted(lines[:-1]) == ["master: master disco", "node01: node01 disco",
                                  "node02: node02 disco"]
    assert lines[-1] == "run on 3 nodes: 3 ok"


def test_run_on_chosen_members_only(rc):
    proc = invoke("run", "--name", NAME, "--on", "node02", "--",
                  "touch /tmp/runcopy-mark")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "run on 1 node: 1 ok"
    marked = [h for h in ("master", "node01", "node02")
              if sh(rc, h, "test -e /tmp/runcopy-mark", check=False).returncode == 0]
    assert marked == ["node02"]


def test_run_fails_when_one_member_fails(rc):
    proc = invoke("run", "--name", NAME, "--on", "slaves", "--",
                  '[ "$(hostname)" != node01 ] || exit 5')
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "run on 2 nodes: 1 ok, 1 failed: node01 (exit 5)"


def test_copy_arrives_byte_for_byte_on_the_chosen_members(rc, tmp_path):
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(200_000))
    src.chmod(0o640)
    dest = "/tmp/runcopy payload.bin"  # a space: the destination is quoted
    proc = invoke("copy", "--name", NAME, str(src), dest, "--on", "master,node02")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "copy on 2 nodes: 2 ok"
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    for host in ("master", "node02"):
        out = sh(rc, host, "sha256sum '/tmp/runcopy payload.bin'; "
                           "stat -c '%a %U' '/tmp/runcopy payload.bin'; "
                           "ls -a /tmp | grep -c imagebake-copy || true").stdout.split()
        assert out[0] == want and out[3:5] == ["640", "disco"] and out[-1] == "0", out
    assert sh(rc, "node01", "test -e '/tmp/runcopy payload.bin'", check=False).returncode == 1


@pytest.mark.parametrize("args,needle", [
    (["run", "--name", NAME, "--on", "node05", "--", "touch /tmp/runcopy-bad"], "node05"),
    (["run", "--name", NAME, "--on", "", "--", "touch /tmp/runcopy-bad"], "--on"),
    (["copy", "--name", NAME, "/nonexistent", "/tmp/runcopy-bad"], "no such file"),
    (["copy", "--name", NAME, "/etc", "/tmp/runcopy-bad"], "is a directory"),
    (["copy", "--name", NAME, "tasks.py", "/tmp/runcopy-bad", "--on", "node01,nodeX"],
     "nodeX"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(rc, args, needle):
    proc = invoke(*args)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    for host in ("master", "node01", "node02"):
        assert sh(rc, host, "test -e /tmp/runcopy-bad", check=False).returncode == 1


def test_ssh_takes_the_node_and_a_command_as_arguments(rc):
    proc = invoke("ssh", "--name", NAME, "node02", "hostname; id -un")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["node02", "disco"]
