"""A node's token orders nothing cluster-wide, end to end on the local cluster (issue 21
N1): root on node01 reads its spec (the join token, no launcher key) and signs extend
(30 days, 1 s) and a leave of node02 to the master agent: each is refused with 403 and
nothing moves; node02 stays a member. The launcher's own key (its record, the master's
spec only) is accepted for the same orders."""

from __future__ import annotations

import json
import os
import time

import pytest

from imagebake import lifetime, state
from imagebake.agent import protocol
from imagebake.agent_client import AgentClient
from imagebake.errors import ImagebakeError
from imagebake.targets.docker import cluster as docker_cluster

from .helpers import read

NAME = f"h2key-{os.getpid() % 100000}"  # other sessions may run tests/cluster at once
TARGET = docker_cluster.DockerTarget()


@pytest.fixture(scope="module")
def keyed(launcher):
    return launcher(NAME, 2)


def _as_node(record: dict, node_spec: dict) -> dict:
    """The record as root on a node could make it: its spec's token as the signing key."""
    return dict(record, launcher_key=node_spec["token"])


def test_a_nodes_spec_carries_the_join_token_and_no_launcher_key(keyed):
    for host in state.node_names(keyed):
        spec = json.loads(read(keyed, host, "/run/imagebake/spec.json"))
        assert spec["role"] == "node" and spec["token"] == keyed["token"]
        assert "launcher_key" not in spec
        assert keyed["launcher_key"] not in read(keyed, host, "/run/imagebake/spec.json")
    master = json.loads(read(keyed, "master", "/run/imagebake/spec.json"))
    assert master["launcher_key"] == keyed["launcher_key"] != keyed["token"]


def test_a_nodes_token_is_refused_for_extend_stop_and_leave(keyed):
    address, port = TARGET.agent_endpoint(keyed)
    node01 = json.loads(read(keyed, "node01", "/run/imagebake/spec.json"))
    client, forged = AgentClient(), _as_node(keyed, node01)
    for seconds in (protocol.MAX_EXTEND, 1):  # 30 days again and again; power off in 1 s
        with pytest.raises(ImagebakeError, match="HTTP 403"):
            client.extend(address, port, forged, seconds)
    with pytest.raises(ImagebakeError, match="HTTP 403"):
        client.leave(address, port, forged, ["node02"])
    assert client.status(address, port, forged) is None
    reply = client.status(address, port, keyed)
    assert reply is not None and reply["lifetime"]["ttl_deadline"] is None
    assert {n["hostname"] for n in reply["nodes"]} == {"node01", "node02"}
    assert "left" not in json.loads(read(keyed, "master", "/var/lib/imagebake/nodes.json"))


def test_the_launchers_key_is_accepted(keyed):
    text = lifetime.extend(TARGET, keyed, "2h")
    assert "power-off at" in text
    address, port = TARGET.agent_endpoint(keyed)
    reply = AgentClient().status(address, port, keyed)
    assert abs(reply["lifetime"]["ttl_deadline"] - (time.time() + 7200)) < 120
    assert state.load(NAME)["ttl_deadline"] == reply["lifetime"]["ttl_deadline"]
