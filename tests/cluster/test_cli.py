"""The local target through the real CLI: bad input is one line and exit 2,
nothing is created; Ctrl-C during launch leaves nothing after `destroy`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


def invoke(*args: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "invoke", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def labelled(name: str) -> list[str]:
    out = []
    for kind in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
        out += subprocess.run(["docker", *kind, "--filter", f"label=imagebake.cluster={name}"],
                              capture_output=True, text=True).stdout.split()
    return out


BAD = [
    (["launch", "--target", "docker", "--slaves", "0", "--name", "bad"], "--slaves"),
    (["launch", "--target", "docker", "--slaves", "-1", "--name", "bad"], "--slaves"),
    (["launch", "--target", "docker", "--slaves", "abc", "--name", "bad"], "whole number"),
    (["launch", "--target", "docker", "--slaves", "100000", "--name", "bad"], "between"),
    (["launch", "--target", "docker", "--slaves", "2", "--name", "Bad_Name"], "cluster name"),
    (["launch", "--target", "docker", "--slaves", "2", "--name", "bad", "--spot"], "--spot"),
    (["launch", "--target", "moon", "--slaves", "2", "--name", "bad"], "unknown target"),
    (["launch", "--target", "docker", "--workers-per-node", "0", "--name", "bad"],
     "--workers-per-node"),
    (["status", "--name", "nosuch"], "no cluster named"),
    (["grow", "--name", "nosuch", "--slaves", "1"], "no cluster named"),
    (["ssh", "--name", "nosuch"], "no cluster named"),
    (["status", "--name", "-x"], "cluster name"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a[:4]) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(state_dir, args, needle):
    out = invoke(*args)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert labelled("bad") == []


def test_docker_daemon_not_running_is_one_line(state_dir):
    out = invoke("launch", "--target", "docker", "--slaves", "1", "--name", "nodaemon",
                 env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Docker daemon is not running" in lines[0], out.stderr


def test_name_taken_is_refused(state_dir, cluster):
    out = invoke("launch", "--target", "docker", "--slaves", "1", "--name", cluster["name"])
    assert out.returncode == 2 and "already exists" in out.stderr


def test_destroy_of_unknown_cluster_is_not_an_error(state_dir):
    out = invoke("destroy", "--name", "nosuch", "--target", "docker")
    assert out.returncode == 0 and "nothing to destroy" in out.stdout


def test_ctrl_c_during_launch_then_destroy_leaves_nothing(state_dir, images):
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "launch", "--target", "docker",
                             "--slaves", "4", "--name", "ctrlc"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not labelled("ctrlc"):
        time.sleep(0.05)
    assert labelled("ctrlc"), "launch created nothing to interrupt"
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    out = invoke("destroy", "--name", "ctrlc", "--target", "docker")
    assert out.returncode == 0, out.stderr
    assert labelled("ctrlc") == []
    second = invoke("destroy", "--name", "ctrlc", "--target", "docker")
    assert second.returncode == 0 and "nothing to destroy" in second.stdout
