"""imagebake/targets/base.py: one interface for every target. Each registered target,
and a throwaway fourth one (tests/fourth: one package plus one name in the registry),
implements it; the code above targets (settings, shrink, lifetime) drives the fourth
target without knowing it, so none of it asks which target it talks to."""

from __future__ import annotations

import json

import pytest

from imagebake import lifetime, settings, shrink, state, targets
from imagebake.errors import ImagebakeError
from imagebake.targets.base import Target
from tests.fakes import FakeAgent
from tests.fourth import cluster as fourth

HALVES = ("_check_launch", "_launch", "_check_grow", "_grow", "_destroy", "_ssh_argv",
          "status", "tunnel", "summary", "exec_argv")


@pytest.fixture
def registered(monkeypatch, tmp_path):
    """The fourth target plugged in: one name in the registry, nothing else."""
    monkeypatch.setitem(targets.REGISTRY, "fourth", "tests.fourth")
    monkeypatch.setenv("IMAGEBAKE_STATE_DIR", str(tmp_path))
    fourth.MACHINES.clear()
    return targets.names()


def test_the_fourth_target_is_one_package_and_one_name(registered):
    assert "fourth" in registered
    assert isinstance(targets.get("fourth"), fourth.FourthTarget)
    with pytest.raises(ImagebakeError, match="unknown target 'fifth'"):
        targets.get("fifth")


@pytest.mark.parametrize("name", ["aws", "docker", "qemu", "fourth"])
def test_every_target_implements_the_interface(registered, name):
    target = targets.get(name)
    assert isinstance(target, Target) and target.name == name
    for method in HALVES:
        assert getattr(type(target), method) is not getattr(Target, method), (name, method)
    # every launch option it takes is a declared setting (help, config key, flag)
    assert set(target.launch_options) <= {k for k, s in settings.SETTINGS.items() if s.option}
    assert target.agent is not None  # the signed client, handed in or the real one


def test_settings_take_the_fourth_target_from_config_and_pass_only_its_options(registered):
    class Config:
        _project_path = "invoke.yaml"
        _project = {"imagebake": {"target": "fourth", "region": "eu-west-1", "ttl": "2h"}}

    target, kwargs = settings.launch_args(Config(), {}, lambda t: targets.get(t).launch_options,
                                          environ={})
    assert target == "fourth" and kwargs["ttl"] == "2h" and "region" not in kwargs


def test_launch_grow_shrink_extend_view_and_destroy_drive_the_fourth_target(registered):
    left = []

    def call(address, port, record, path, msg, reply_type):
        if path == "/v1/leave":
            left.append(msg["hostnames"])
            return {"removed": msg["hostnames"], "unknown": []}
        assert path == "/v1/extend"
        return {"ttl_deadline": msg["ts"] + msg["ttl_seconds"], "armed": "ok"}

    agent = FakeAgent(lambda a, p, r: {"ddfs_replicas": 1, "nodes": [],
                                       "lifetime": {"idle_stop": 90}}, call)
    target = targets.get("fourth", agent=agent)
    record = target.launch(name="four", slaves=3, ttl="1h", idle_stop="90s")
    assert record["idle_stop"] == 90 and state.node_names(state.load("four")) == [
        "node01", "node02", "node03"]
    target.grow(record, 1)
    safe: list = []

    def disco(batch):
        safe.extend(body for _, path, body in batch if path == "/disco/ctrl/gc_blacklist")
        return [(200, json.dumps(safe) if path.endswith("safe_gc_blacklist") else '""')
                for _, path, _ in batch]

    text = shrink.shrink(target, state.load("four"), node="node02", calls=disco,
                         say=lambda s: None, progress=lambda t, done: None)
    assert "removed node02" in text and left == [["node02"]]
    assert target.log[-1] == ("remove", ["node02"])
    assert state.node_names(state.load("four")) == ["node01", "node03", "node04"]
    assert "power-off at" in lifetime.extend(target, state.load("four"), "2h", target.agent)
    view = lifetime.view(target, state.load("four"), {"master": {"state": "running"}},
                         target.agent)
    assert view["source"] == "master agent" and view["idle_stop"] == 90
    assert target.destroy("four", state.load("four")) == "destroyed four"
    assert state.load("four") is None


def test_members_and_nodes_go_by_the_records_names_not_positions(tmp_path, monkeypatch):
    # after a shrink removed node02, node03 is still node03 (state.Node), everywhere
    monkeypatch.setenv("IMAGEBAKE_STATE_DIR", str(tmp_path))
    record = {"name": "gap", "target": "fourth",
              "nodes": [state.node("node01"), state.node("node03")]}
    target = fourth.FourthTarget()
    assert [(m.label, m.hostname) for m in target.members(record)] == [
        ("node01", "node01"), ("node03", "node03")]
    assert target.check_node(record, "node03") == "node03"
    with pytest.raises(ImagebakeError, match="no node 'node02'.*node01, node03"):
        target.check_node(record, "node02")
    state.save(record)
    target.forget_members(record, target.members(record)[1:])
    assert state.node_names(state.load("gap")) == ["node01"]
