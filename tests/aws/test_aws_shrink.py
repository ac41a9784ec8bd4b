"""`invoke shrink` on AWS against moto (issue 15 item 1): exactly the chosen instances are
terminated, in ONE TerminateInstances call scoped to the owner's cluster; the rest keep
running; the record and the pinned known_hosts forget them; bad input is one line with
no EC2 write. The master agent (status and the signed leave) is the test's stub."""

from __future__ import annotations

import json

import pytest

from imagebake import shrink as S
from imagebake import state
from imagebake.errors import ImagebakeError
from imagebake.targets.aws import hostkeys
from tests.fakes import FakeAgent

from .test_aws_launch import aws, instances, launch, ready_stub

WRITES = ("TerminateInstances", "RunInstances", "StopInstances", "CreateTags",
          "DeleteSecurityGroup")


def safe_disco(batch):
    """Disco's ctrl API answering that the gc-blacklisted nodes are already safe."""
    listed = [body for _, path, body in batch if path == "/disco/ctrl/gc_blacklist"]
    safe_disco.listed = getattr(safe_disco, "listed", []) + listed
    return [(200, json.dumps(safe_disco.listed) if path.endswith("safe_gc_blacklist")
             else ('{}' if path.endswith("nodeinfo") else '""')) for _, path, _ in batch]


def shrinker(calls, left):
    def agent_call(address, port, record, path, msg, reply_type):
        assert (path, reply_type) == ("/v1/leave", "leave_reply")
        left.append(msg["hostnames"])
        return {"removed": msg["hostnames"], "unknown": []}

    target = aws(calls)
    target.agent = FakeAgent(ready_stub(None), agent_call)
    return target


def test_shrink_terminates_exactly_the_chosen_instances_in_one_call(amis, ec2, calls):
    record = launch(calls, readiness=ready_stub(None), slaves=4, wait=True)
    ids = [n["id"] for n in record["nodes"]]
    victim = record["nodes"][1]
    assert victim["private_ip"] in hostkeys.pinned("c1")
    calls.seen.clear()
    calls.sent.clear()
    left: list = []
    text = S.shrink(shrinker(calls, left), state.load("c1"), node="node02", calls=safe_disco,
                    say=lambda s: None, progress=lambda t, done: None)
    assert left == [["node2"]]  # the master agent's name for it (ready_stub: node<i>)
    assert calls.sent.count("TerminateInstances") == 1
    assert calls.named("TerminateInstances") == [{"InstanceIds": [victim["id"]]}]
    assert not [op for op in calls.sent if op in WRITES and op != "TerminateInstances"]
    described = [p for p in calls.named("DescribeInstances") if p.get("InstanceIds") == [
        victim["id"]]]
    assert described and {f["Name"] for f in described[0]["Filters"]} >= {
        "tag:imagebake:cluster", "tag:owner"}
    live = {i["InstanceId"]: i["State"]["Name"] for i in instances(ec2, ids)}
    assert live[victim["id"]] in ("shutting-down", "terminated")
    assert all(live[i] == "running" for i in ids if i != victim["id"])
    saved = state.load("c1")
    assert [n["id"] for n in saved["nodes"]] == [i for i in ids if i != victim["id"]]
    assert victim["id"] not in saved["ids"]
    assert victim["private_ip"] not in hostkeys.pinned("c1")
    assert victim["private_ip"] not in hostkeys.known_hosts_path("c1").read_text()
    assert "shrank c1 to 3 slave(s): removed node02" in text
    # names stay with their instances: node03 is still node03, a grow adds node05
    assert state.node_names(saved) == ["node01", "node03", "node04"]
    third = aws().ssh_argv(saved, "node03")
    assert third[-1] == f"ubuntu@{record['nodes'][2]['private_ip']}"
    grown = aws().grow(saved, 1)
    assert state.node_names(grown) == ["node01", "node03", "node04", "node05"]
    with pytest.raises(ImagebakeError, match="no node 'node02'"):
        aws().ssh_argv(grown, "node02")
    aws().destroy("c1", state.load("c1"))


@pytest.mark.parametrize("kw, says", [
    ({"slaves": 2}, "below the replica count 3"),
    ({"node": "master"}, "the master cannot be removed"),
    ({"node": "node09"}, "no node 'node09'"),
    ({"slaves": 0}, "remove at least one"),
    ({"slaves": 4}, "keeps at least one"),
])
def test_bad_shrink_is_one_line_and_writes_nothing(amis, ec2, calls, kw, says):
    record = launch(calls, readiness=ready_stub(None), slaves=4, wait=True)
    calls.sent.clear()
    with pytest.raises(ImagebakeError, match=says) as err:
        S.shrink(shrinker(calls, []), state.load("c1"), calls=safe_disco,
                 say=lambda s: None, progress=lambda t, done: None, **kw)
    assert "\n" not in str(err.value)
    assert not [op for op in calls.sent if op in WRITES]
    assert state.load("c1")["nodes"] == record["nodes"]
    aws().destroy("c1", state.load("c1"))
