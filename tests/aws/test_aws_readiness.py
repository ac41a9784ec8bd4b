"""The launcher's signed status call against the real agent join server on 127.0.0.1."""

from __future__ import annotations

import pytest

from imagebake.agent import spec as agent_spec
from imagebake.agent.context import Context
from imagebake.agent.master import JoinServer, Master
from imagebake.targets.aws import readiness

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMasterHostKeyForTheReadinessTest000000000"
DISCO_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMasterDiscoKeyForTheReadinessTest00000000"


@pytest.fixture
def master_agent(tmp_path):
    spec = agent_spec.make_spec("rdy", "master", expected_nodes=2, hostname="master")
    master = Master(Context(root=str(tmp_path)), spec, "master", ["10.0.0.10"], DISCO_KEY,
                    HOST_KEY)
    server = JoinServer(master, "127.0.0.1", 0)
    server.start()
    yield spec, server.port
    server.shutdown()
    server.server_close()


def test_status_reply_is_verified_and_read(master_agent):
    spec, port = master_agent
    record = {"name": "rdy", "token": spec["token"]}
    reply = readiness.agent_status("127.0.0.1", port, record)
    assert reply is not None and reply["type"] == "status_reply"
    assert reply["expected_nodes"] == 2 and reply["joined"] == 0
    assert readiness.is_ready(reply, 2) is False
    assert readiness.master_host_key(reply) == " ".join(HOST_KEY.split()[:2])


def test_wrong_token_gets_no_reply(master_agent):
    spec, port = master_agent
    record = {"name": "rdy", "token": agent_spec.new_token()}
    assert readiness.agent_status("127.0.0.1", port, record) is None


def test_unreachable_agent_is_none():
    record = {"name": "rdy", "token": agent_spec.new_token()}
    assert readiness.agent_status("127.0.0.1", 9, record, timeout=1.0) is None


def test_ready_needs_every_node():
    reply = {"ready": True, "nodes": [{"hostname": "a", "address": "10.0.0.2",
                                       "addresses": ["10.0.0.2"], "host_pubkey": HOST_KEY}]}
    assert readiness.is_ready(reply, 1) is True
    assert readiness.is_ready(reply, 2) is False
    assert readiness.is_ready({"ready": False, "nodes": reply["nodes"]}, 1) is False
    assert readiness.node_host_keys(reply) == {"10.0.0.2": " ".join(HOST_KEY.split()[:2])}
