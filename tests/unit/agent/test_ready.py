"""ready.py: one definition of "ready" for the agent's status, the master's signed status
reply and the launcher."""

from imagebake.agent import ready


def test_a_cluster_is_ready_once_the_expected_nodes_joined():
    reply = {"ready": True, "nodes": [{"hostname": "node01"}, {"hostname": "node02"}]}
    assert ready.is_ready(reply, 2) and ready.is_ready(reply, 1)
    assert not ready.is_ready(reply, 3)
    assert not ready.is_ready(None, 0) and not ready.is_ready({}, 0)


def test_the_masters_own_not_ready_wins():
    reply = {"ready": False, "nodes": {"node01": {}}}
    assert not ready.is_ready(reply, 1)
    assert ready.joined_names(reply) == {"node01"}


def test_a_master_is_ready_after_its_disco_phase_with_enough_members():
    done = {"spec": {"status": "ok"}, "disco": {"status": "ok"}}
    assert ready.master_ready(done, 2, 2) and not ready.master_ready(done, 1, 2)
    assert not ready.master_ready({"disco": {"status": "failed"}}, 5, 2)
    assert not ready.master_ready({"spec": {"status": "ok"}}, 5, 2)


def test_a_node_is_ready_when_every_phase_through_disco_succeeded():
    assert ready.node_ready({"join": {"status": "ok"}, "disco": {"status": "ok"}})
    assert not ready.node_ready({"join": {"status": "ok"}})
    assert not ready.node_ready({"join": {"status": "failed"}, "disco": {"status": "ok"}})
    assert not ready.node_ready({})
