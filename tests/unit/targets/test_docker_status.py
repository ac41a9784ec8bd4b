"""The docker target's status reads agents with `docker exec`: one that does not answer in
30 s (a host loaded past 50 runnable processes did this in `invoke bench --what cluster`)
is "no answer", and the wait goes on, instead of a traceback ending the launch."""

from __future__ import annotations

import subprocess

from imagebake.targets.docker import cluster


def test_an_exec_that_times_out_is_no_answer(monkeypatch):
    def slow(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, kwargs.get("timeout"))

    monkeypatch.setattr(subprocess, "run", slow)
    assert cluster._exec_json("imagebake-x-master", "imagebake-agent", "status") is None


def test_an_exec_that_answers_is_read(monkeypatch):
    def answer(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 1, stdout='{"ready": false}\n', stderr="")

    monkeypatch.setattr(subprocess, "run", answer)
    assert cluster._exec_json("imagebake-x-master", "cat", "f") == {"ready": False}
