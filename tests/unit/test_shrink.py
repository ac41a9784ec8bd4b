"""`invoke shrink`, launcher side (issue 15 item 1): the checks (one line, nothing
changed), the drain against a fake Disco (blacklist + gc_blacklist, GC started until
DDFS calls the nodes safe, bounded), and the order drain -> leave -> terminate -> forget."""

from __future__ import annotations

import json

import pytest

from imagebake import shrink as S
from imagebake import state
from imagebake.errors import ImagebakeError
from imagebake.targets.aws.cluster import AwsTarget
from tests.fakes import FakeAgent
from tests.fourth.cluster import FourthTarget

RECORD = {"name": "demo", "target": "fourth", "token": "ab" * 32,
          "nodes": [state.node(f"node0{i}") for i in range(1, 5)]}
T = FourthTarget()  # a target whose record names its slaves (as docker's and qemu's do)


def names(plan):
    return [m.label for m in plan.chosen]


def test_check_chooses_the_newest_or_the_named_slaves():
    assert names(S.check(T, RECORD, slaves=1)) == ["node04"]
    assert names(S.check(T, RECORD, node="node02")) == ["node02"]
    plan = S.check(T, RECORD, node="node02,node02", status_reply={"ddfs_replicas": 2})
    assert names(plan) == ["node02"] and plan.remaining == 3 and plan.replicas == 2
    assert names(S.check(T, RECORD, slaves="2", status_reply={"ddfs_replicas": 2})) == [
        "node03", "node04"]


@pytest.mark.parametrize("kw, says", [
    ({}, "exactly one of --slaves K or --node"),
    ({"slaves": 1, "node": "node01"}, "exactly one of"),
    ({"slaves": 0}, "remove at least one"),
    ({"slaves": -2}, "remove at least one"),
    ({"slaves": "two"}, "not a whole number"),
    ({"slaves": 4}, "keeps at least one"),
    ({"slaves": 9}, "keeps at least one"),
    ({"node": "master"}, "the master cannot be removed"),
    ({"node": "node01,master"}, "the master cannot be removed"),
    ({"node": "node07"}, "no node 'node07'"),
    ({"node": "node01,"}, "an empty node name"),
    ({"node": "node01,node02,node03,node04"}, "every slave"),
    ({"slaves": 2}, "below the replica count 3"),  # 4 slaves, replicas 3: one may go
])
def test_bad_shrink_input_is_one_line(kw, says):
    with pytest.raises(ImagebakeError) as err:
        S.check(T, RECORD, **kw, status_reply={"ddfs_replicas": 3})
    assert says in str(err.value) and "\n" not in str(err.value)


def test_replicas_default_to_what_the_agent_writes_when_the_master_does_not_say():
    with pytest.raises(ImagebakeError, match="replica count 3"):
        S.check(T, RECORD, slaves=2)
    small = dict(RECORD, nodes=RECORD["nodes"][:2])
    with pytest.raises(ImagebakeError, match="replica count 2"):
        S.check(T, small, slaves=1)


def test_aws_members_take_their_names_from_the_master_agent():
    record = {"name": "demo", "target": "aws", "nodes": [
        state.node(f"node0{i}", id=f"i-{i}", private_ip=f"10.0.0.1{i}") for i in range(1, 5)]}
    reply = {"ddfs_replicas": 3, "nodes": [{"hostname": "ip-10-0-0-12", "address": "10.0.0.12"}]}
    plan = S.check(AwsTarget(), record, node="ip-10-0-0-12", status_reply=reply)
    assert [(m.label, m.hostname, m.entry["id"]) for m in plan.chosen] == [
        ("node02", "ip-10-0-0-12", "i-2")]
    again = S.check(AwsTarget(), record, node="node02", status_reply=reply)
    assert again.chosen[0].entry["id"] == "i-2"


class FakeDisco:
    """Disco 0.5.4's ctrl API as shrink uses it; DDFS calls a node safe after GC_RUNS runs
    started once it was gc-blacklisted; GC is in its initial wait for WAITS polls."""

    def __init__(self, gc_runs=1, waits=1, tasks_polls=0):
        self.blacklist, self.gc_blacklist = [], []
        self.gc_runs, self.waits, self.tasks_polls = gc_runs, waits, tasks_polls
        self.started = 0
        self.running = 0  # polls left in the running GC
        self.log = []

    def __call__(self, batch):
        out = []
        for method, path, body in batch:
            self.log.append((method, path, body))
            if path == "/disco/ctrl/blacklist":
                self.blacklist.append(body)
                out.append((200, '""'))
            elif path == "/disco/ctrl/gc_blacklist":
                self.gc_blacklist.append(body)
                out.append((200, '""'))
            elif path == "/disco/ctrl/nodeinfo":
                busy = self.tasks_polls > 0
                self.tasks_polls -= 1
                out.append((200, json.dumps({h: {"tasks": ["job@1"] if busy else []}
                                             for h in self.blacklist})))
            elif path == "/ddfs/ctrl/safe_gc_blacklist":
                safe = self.gc_blacklist if self.started >= self.gc_runs and not \
                    self.running else []
                out.append((200, json.dumps(safe)))
            elif path == "/ddfs/ctrl/gc_status":
                if self.running:
                    self.running -= 1
                    out.append((200, json.dumps("GC is in phase rr_blobs")))
                else:
                    out.append((200, '""'))
            elif path == "/ddfs/ctrl/gc_start":
                if self.waits > 0:
                    self.waits -= 1
                    out.append((200, json.dumps("GC is waiting")))
                else:
                    self.started += 1
                    self.running = 2
                    out.append((200, json.dumps("GC has started")))
            else:
                out.append((404, ""))
        return out


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_drain_blacklists_then_runs_gc_until_ddfs_calls_the_nodes_safe():
    disco, clock, seen = FakeDisco(gc_runs=2, waits=2, tasks_polls=2), Clock(), []
    plan = S.check(T, RECORD, node="node02", status_reply={"ddfs_replicas": 3})
    text = S.drain(plan, disco, timeout=600, poll=3, clock=clock, sleep=clock.sleep,
                   progress=lambda t, done: seen.append((t, done)))
    assert disco.blacklist == ["node02"] and disco.gc_blacklist == ["node02"]
    assert disco.log[:2] == [("POST", "/disco/ctrl/blacklist", "node02"),
                             ("POST", "/disco/ctrl/gc_blacklist", "node02")]
    assert disco.started == 2 and "drained node02" in text
    assert seen[-1][1] is True and any("waits for its first run" in t for t, _ in seen)
    assert any("tasks still on node02" in t for t, _ in seen)


def test_drain_is_bounded_and_says_the_nodes_stay_blacklisted():
    disco, clock = FakeDisco(gc_runs=99, waits=0), Clock()
    plan = S.check(T, RECORD, node="node02", status_reply={"ddfs_replicas": 3})
    with pytest.raises(ImagebakeError) as err:
        S.drain(plan, disco, timeout=30, poll=3, clock=clock, sleep=clock.sleep)
    assert "timed out after 30s" in str(err.value) and "stay blacklisted" in str(err.value)
    assert clock.now <= 33


def test_shrink_drains_then_leaves_then_terminates_then_forgets(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEBAKE_STATE_DIR", str(tmp_path))
    record = dict(RECORD, nodes=list(RECORD["nodes"]))
    state.save(record)
    order = []

    def leave(address, port, rec, path, msg, reply_type):
        order.append(("leave", path, msg["hostnames"]))
        return {"removed": msg["hostnames"], "unknown": []}

    target = FourthTarget(FakeAgent(lambda a, p, r: {"ddfs_replicas": 3, "nodes": []}, leave))
    disco = FakeDisco(waits=0)

    def calls(batch):
        if not order or order[-1] != "drain":
            order.append("drain")
        return disco(batch)

    target.remove_members = lambda rec, chosen: order.append(
        ("terminate", [m.label for m in chosen])) or "removed 1"
    text = S.shrink(target, record, node="node03", calls=calls, say=lambda s: None,
                    progress=lambda t, done: None)
    assert order == ["drain", ("leave", "/v1/leave", ["node03"]), ("terminate", ["node03"])]
    assert "shrank demo to 3 slave(s): removed node03" in text
    assert state.node_names(state.load("demo")) == ["node01", "node02", "node04"]


def test_force_skips_the_drain_and_says_what_may_be_lost(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEBAKE_STATE_DIR", str(tmp_path))
    record = dict(RECORD, nodes=list(RECORD["nodes"]))
    said = []

    target = FourthTarget(FakeAgent(lambda a, p, r: {"ddfs_replicas": 3},
                                    lambda *args: {"removed": ["node04"], "unknown": []}))

    def no_disco(batch):
        raise AssertionError("--force must not drain")

    text = S.shrink(target, record, slaves=1, force=True, calls=no_disco, say=said.append)
    assert "may be lost" in said[0] and "not drained (--force)" in text


def test_a_stopped_master_is_one_line():
    with pytest.raises(ImagebakeError, match="not running: cannot shrink"):
        S.shrink(FourthTarget(endpoint=None), dict(RECORD), slaves=1)


@pytest.mark.parametrize("args, says", [
    ([], "exactly one of --slaves K or --node"),
    (["--slaves", "1", "--node", "node01"], "exactly one of"),
    (["--slaves", "1", "--timeout", "soon"], "--timeout 'soon'"),
    (["--slaves", "1"], "no cluster named 'nope'"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, says):
    import os
    import subprocess
    import sys

    env = dict(os.environ, IMAGEBAKE_STATE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "invoke", "shrink", "--name", "nope", *args],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], out.stderr
    assert not list(tmp_path.iterdir())


def test_a_silent_master_agent_is_refused_without_force():
    with pytest.raises(ImagebakeError, match="does not answer: cannot drain safely"):
        S.shrink(FourthTarget(FakeAgent(lambda a, p, r: None)), dict(RECORD), slaves=1,
                 calls=lambda b: [])
