"""imagebake/targets/ready.py: the one definition of a ready cluster that every target's
status and launch wait use."""

from __future__ import annotations

from imagebake.targets.ready import cluster_ready

UP = {"state": "running", "joined": True, "usable": True}


def test_ready_needs_the_master_running_and_one_running_node():
    assert cluster_ready(master_running=True, nodes=[UP])
    assert not cluster_ready(master_running=False, nodes=[UP])
    assert not cluster_ready(master_running=True, nodes=[])
    assert not cluster_ready(master_running=True, nodes=[dict(UP, state="exited")])


def test_every_running_node_must_have_joined_and_be_usable():
    assert not cluster_ready(master_running=True, nodes=[UP, dict(UP, joined=False)])
    assert not cluster_ready(master_running=True, nodes=[UP, dict(UP, usable=False)])
    # a dead node is reported missing, not waited for ...
    assert cluster_ready(master_running=True, nodes=[UP, {"state": "exited"}])
    # ... unless every node must run (aws)
    assert not cluster_ready(master_running=True, nodes=[UP, {"state": "exited"}],
                             every_node=True)


def test_the_master_agents_signed_reply_must_count_every_node():
    reply = {"ready": True, "nodes": [{"hostname": "node01"}, {"hostname": "node02"}]}
    assert cluster_ready(master_running=True, reply=reply, expected=2)
    assert not cluster_ready(master_running=True, reply=reply, expected=3)
    assert not cluster_ready(master_running=True, reply=None, expected=0)
    assert not cluster_ready(master_running=True, reply=dict(reply, ready=False), expected=1)
    # without EXPECTED the reply is not asked (docker reads the agent's report by exec)
    assert cluster_ready(master_running=True, nodes=[UP], reply=None)
