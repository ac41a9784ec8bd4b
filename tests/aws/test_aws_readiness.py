"""The launcher's signed status call against the real agent join server on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from imagebake import agent_client
from imagebake.agent import protocol
from imagebake.agent import spec as agent_spec
from imagebake.agent.context import Context
from imagebake.agent.master import JoinServer, Master
from imagebake.agent_client import AgentClient
from imagebake.errors import ImagebakeError
from imagebake.targets.ready import cluster_ready

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
    record = {"name": "rdy", "token": spec["token"], "launcher_key": spec["launcher_key"]}
    reply = AgentClient().status("127.0.0.1", port, record)
    assert reply is not None and reply["type"] == "status_reply"
    assert reply["expected_nodes"] == 2 and reply["joined"] == 0
    assert cluster_ready(master_running=True, reply=reply, expected=2) is False
    assert agent_client.master_host_key(reply) == " ".join(HOST_KEY.split()[:2])


def test_wrong_token_gets_no_reply(master_agent):
    spec, port = master_agent
    record = {"name": "rdy", "launcher_key": agent_spec.new_token()}
    assert AgentClient().status("127.0.0.1", port, record) is None


def test_a_nodes_join_token_gets_no_status(master_agent):
    """The status the launcher pins host keys from needs the launcher's own key: the join
    token every node's spec carries is refused (issue 21 N1)."""
    spec, port = master_agent
    record = {"name": "rdy", "launcher_key": spec["token"]}
    assert AgentClient().status("127.0.0.1", port, record) is None
    with pytest.raises(ImagebakeError, match="before the launcher had its own key"):
        AgentClient().extend("127.0.0.1", port, {"name": "rdy", "token": spec["token"]}, 60)


def test_unreachable_agent_is_none():
    record = {"name": "rdy", "launcher_key": agent_spec.new_token()}
    assert AgentClient().status("127.0.0.1", 9, record, timeout=1.0) is None


def test_ready_needs_every_node():
    reply = {"ready": True, "nodes": [{"hostname": "a", "address": "10.0.0.2",
                                       "addresses": ["10.0.0.2"], "host_pubkey": HOST_KEY}]}
    assert cluster_ready(master_running=True, reply=reply, expected=1) is True
    assert cluster_ready(master_running=True, reply=reply, expected=2) is False
    assert cluster_ready(master_running=True, reply={"ready": False, "nodes": reply["nodes"]},
                         expected=1) is False
    assert agent_client.node_host_keys(reply) == {"10.0.0.2": " ".join(HOST_KEY.split()[:2])}


# ------------------------------------------------------------------ the launcher's side
class FakeMaster:
    """An HTTP server on 127.0.0.1 answering /v1/status with ANSWER(request msg) -> bytes."""

    def __init__(self, answer):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = fake.answer(json.loads(raw)["msg"])
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.answer = answer
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def status_reply(request: dict, cluster: str = "rdy") -> dict:
    return protocol.make_status_reply(cluster, time.time(), request["nonce"], {
        "ready": True, "joined": 1, "expected_nodes": 1, "host_pubkey": HOST_KEY,
        "nodes": [{"hostname": "node01", "address": "10.0.0.2", "host_pubkey": HOST_KEY}]})


def ask(answer):
    token = agent_spec.new_token()
    fake = FakeMaster(lambda request: answer(token, request))
    try:
        return AgentClient().status("127.0.0.1", fake.port,
                                    {"name": "rdy", "launcher_key": token})
    finally:
        fake.close()


def test_a_reply_signed_with_the_cluster_token_is_read():
    reply = ask(lambda token, request: protocol.seal(token, status_reply(request)))
    assert reply is not None and reply["ready"] is True
    assert agent_client.master_host_key(reply)


def test_an_unsigned_status_reply_is_refused():
    # a stranger on the path answers for the master: readiness and a host key to pin
    def unsigned(token, request):
        return json.dumps({"msg": status_reply(request), "mac": "0" * 64},
                          sort_keys=True, separators=(",", ":")).encode()

    assert ask(unsigned) is None


def test_a_reply_signed_with_another_token_is_refused():
    assert ask(lambda token, request: protocol.seal(agent_spec.new_token(),
                                                    status_reply(request))) is None


def test_a_replayed_reply_to_another_request_is_refused():
    def replayed(token, request):
        return protocol.seal(token, status_reply({**request, "nonce": "f" * 32}))

    assert ask(replayed) is None


def test_a_reply_for_another_cluster_is_refused():
    assert ask(lambda token, request: protocol.seal(
        token, status_reply(request, cluster="other"))) is None
