"""node.py: a node joins with backoff until the master answers and trusts only a welcome
signed with the cluster's token that announces usable addresses."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from imagebake.agent import node, protocol, spec
from imagebake.agent import node as N

from .helpers import COOKIE, TOKEN, fake_key, needs_keygen


@needs_keygen
def test_backoff_is_capped_exponential_with_jitter():
    import random
    delays = N.backoff_delays(rng=random.Random(1))
    got = [next(delays) for _ in range(12)]
    bounds = [min(10.0, 0.5 * 2 ** i) for i in range(12)]
    for delay, bound in zip(got, bounds):
        assert bound / 2 <= delay <= bound
    assert max(got) <= 10.0 and got[-1] >= 5.0


@needs_keygen
def test_node_retries_until_the_master_answers(cluster):
    ctx = cluster.agent_ctx("late", hostname="late", allow_loopback=True)
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) == 3:
            cluster.start_master()  # the master comes up while the node waits
    ctx.sleep = sleep
    ident = N.Identity("late", ["127.0.0.40"], 1, fake_key(40), fake_key(41))
    welcome = N.join_until_welcome(ctx, cluster.node_spec, ident, max_attempts=10)
    assert welcome["type"] == "welcome" and len(slept) == 3
    assert slept[0] <= 0.5 and slept[2] <= 2.0


def test_node_refuses_a_welcome_announcing_loopback(agent_ctx):
    nonce = protocol.new_nonce()
    welcome = protocol.make_welcome("demo", 1000, nonce, "master", ["127.0.0.1"],
                                    fake_key(1), fake_key(2), [["master", "127.0.0.1"]])
    with pytest.raises(protocol.ProtocolError):
        protocol.check_welcome_fields(welcome, nonce)
    assert protocol.check_welcome_fields(welcome, nonce, allow_loopback=True)


class FakeWelcomeMaster:
    """Answers a join with a welcome for its nonce, sealed however the test says."""

    def __init__(self, seal):
        outer = self
        self.seal = seal

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                msg = json.loads(body.decode())["msg"]
                welcome = protocol.make_welcome(
                    "demo", msg["ts"], msg["nonce"], "master", ["10.0.0.5"],
                    fake_key(50) + " disco@evil", fake_key(51), [["master", "10.0.0.5"]])
                out = outer.seal(welcome)
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/join"
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        thread.daemon = True
        thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("how", ["unsigned", "wrong token", "good"])
def test_node_refuses_an_unsigned_or_wrongly_signed_welcome(agent_ctx, how):
    seal = {"unsigned": lambda m: json.dumps({"msg": m, "mac": ""}).encode(),
            "wrong token": lambda m: protocol.seal("cd" * 32, m),
            "good": lambda m: protocol.seal(TOKEN, m)}[how]
    fake = FakeWelcomeMaster(seal)
    try:
        ctx = agent_ctx()
        the_spec = spec.make_spec("demo", "node", master_address="10.0.0.5", token=TOKEN,
                                  cookie=COOKIE)
        ident = node.Identity("node01", ["127.0.0.1"], 1, fake_key(1), fake_key(2))
        if how == "good":
            assert node.join_once(ctx, the_spec, ident, url=fake.url)["type"] == "welcome"
        else:
            with pytest.raises(protocol.ProtocolError, match="bad mac|must be"):
                node.join_once(ctx, the_spec, ident, url=fake.url)
    finally:
        fake.close()
