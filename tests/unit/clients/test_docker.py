"""imagebake/clients/docker.py: a failing docker call is one line (its last stderr line),
a missing CLI or daemon says how to get one; ids and subnets are read from its output.
A stand-in `docker` on PATH answers, so no daemon is needed."""

from __future__ import annotations

import json

import pytest

from imagebake.clients import docker as D
from imagebake.errors import ImagebakeError


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    """A `docker` script: prints $FAKE_OUT, writes $FAKE_ERR to stderr, exits $FAKE_RC;
    every argv it gets lands in calls.log."""
    script = tmp_path / "docker"
    script.write_text('#!/bin/sh\necho "$*" >> "$FAKE_LOG"\n'
                      'printf "%s" "$FAKE_OUT"\nprintf "%s" "$FAKE_ERR" >&2\n'
                      'exit "${FAKE_RC:-0}"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))

    def answer(out: str = "", err: str = "", rc: int = 0) -> None:
        monkeypatch.setenv("FAKE_OUT", out)
        monkeypatch.setenv("FAKE_ERR", err)
        monkeypatch.setenv("FAKE_RC", str(rc))

    answer.calls = lambda: (tmp_path / "calls.log").read_text().splitlines()
    return answer


def test_a_failing_call_is_its_last_stderr_line(fake_docker):
    fake_docker(err="warning: x\nError: No such image: nope\n", rc=1)
    with pytest.raises(ImagebakeError) as err:
        D.docker("rmi", "nope")
    assert str(err.value) == "docker rmi failed: Error: No such image: nope"
    assert D.docker("rmi", "nope", check=False) == ""


def test_no_cli_or_no_daemon_says_how_to_get_one(fake_docker, monkeypatch, tmp_path):
    fake_docker(out="", rc=1)
    with pytest.raises(ImagebakeError, match="Docker daemon is not running"):
        D.require_daemon()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ImagebakeError, match="docker is not installed"):
        D.docker("ps")


def test_ids_filter_by_label_and_subnets_come_from_ipam(fake_docker):
    fake_docker(out="c1\nc2\n")
    assert D.ids("container", "imagebake.cluster=demo") == ["c1", "c2"]
    assert D.ids("network", "imagebake.cluster=demo") == ["c1", "c2"]
    assert fake_docker.calls() == ["ps -aq --filter label=imagebake.cluster=demo",
                         "network ls -q --filter label=imagebake.cluster=demo"]
    fake_docker(out=json.dumps([{"IPAM": {"Config": [{"Subnet": "10.213.0.0/24"}, {}]}}]))
    assert D.used_subnets() == ["10.213.0.0/24"]
