"""loop.py: after the boot the master stops an idle cluster in order (Disco, the nodes
told, then itself), nodes obey only a signed stop order or deadline, the TTL is
enforced, and stopping the agent stops Disco once."""

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from imagebake.agent import idle, ttl
from imagebake.agent import protocol as P
from imagebake.agent.loop import Agent
from imagebake.agent.master import Master
from imagebake.agent.spec import make_spec

from .helpers import TOKEN, Clock, fake_key


def test_node_heartbeat_loop_powers_off_after_ttl(agent_ctx):
    calls = []
    clock = Clock(1000)
    ctx = agent_ctx(clock=clock, power_off=lambda c: calls.append("off"))
    agent = Agent(ctx)
    agent.spec = make_spec("c", "node", master_address="127.0.0.1", ttl_deadline=1010)

    def sleep(seconds):
        clock.now += seconds
    ctx.sleep = sleep
    agent.forever(tick=5, max_ticks=10)
    assert calls == ["off"] and clock.now == 1010


T0 = 1700000000


def _master_agent(agent_ctx, clock, calls, idle_stop=60, nodes=("node01", "node02")):
    ctx = agent_ctx("m", hostname="master", clock=clock,
                    power_off=lambda c: calls.append(("off", c.now())))
    spec = make_spec("demo", "master", hostname="master", idle_stop=idle_stop, token=TOKEN,
                     expected_nodes=len(nodes))
    agent = Agent(ctx)
    agent.spec = spec
    agent.master = Master(ctx, spec, "master", ["10.0.0.5"], fake_key(1), fake_key(2))
    for i, name in enumerate(nodes):
        agent.master.nodes[name] = {"hostname": name, "address": f"10.0.0.{10 + i}"}
    agent.master.disco_started = True
    os.makedirs(ctx.path("/usr/bin"))
    with open(ctx.path("/usr/bin/disco"), "w") as handle:
        handle.write("#!/bin/sh\n")
    os.chmod(ctx.path("/usr/bin/disco"), 0o755)
    return agent


def test_idle_master_stops_disco_tells_every_node_then_powers_off(agent_ctx):
    clock, calls = Clock(T0), []
    agent = _master_agent(agent_ctx, clock, calls)
    jobs = {"list": [(T0 + 20, "active", "wc@1")]}
    agent.joblist = lambda port: jobs["list"]
    assert not agent.watch_idle()
    clock.now = T0 + 200  # still running
    assert not agent.watch_idle() and agent.master.stopping is None
    jobs["list"] = [(T0 + 20, "ready", "wc@1")]
    clock.now = T0 + 205  # ended: idle from here
    assert not agent.watch_idle()
    clock.now = T0 + 264
    assert not agent.watch_idle() and agent.master.stopping is None
    clock.now = T0 + 265
    assert not agent.watch_idle()  # decided: Disco stopped, stop orders go out
    assert agent.master.stopping == "idle stop: no Disco job for 60 s"
    assert ["/usr/bin/disco", "stop"] in agent.ctx.runner.calls and calls == []
    state = json.load(open(agent.ctx.path("/var/lib/imagebake/state.json")))
    assert state["lifetime"]["stopping"] and state["lifetime"]["idle"]["stop_at"] == T0 + 265
    agent.master.told.add("node01")
    clock.now = T0 + 275
    assert not agent.watch_idle() and calls == []  # node02 not told yet
    agent.master.told.add("node02")
    assert agent.watch_idle() and calls == [("off", T0 + 275)]


def test_a_node_that_never_heartbeats_delays_the_master_at_most_the_grace(agent_ctx):
    clock, calls = Clock(T0), []
    agent = _master_agent(agent_ctx, clock, calls)
    agent.joblist = lambda port: None  # a dead Disco runs no job
    assert not agent.watch_idle()  # the idle clock starts with the master's loop
    clock.now = T0 + 60
    assert not agent.watch_idle() and agent.master.stopping
    clock.now = T0 + 60 + idle.STOP_GRACE - 1
    assert not agent.watch_idle()
    clock.now = T0 + 60 + idle.STOP_GRACE
    assert agent.watch_idle() and calls == [("off", T0 + 60 + idle.STOP_GRACE)]


def test_without_idle_stop_nothing_is_watched(agent_ctx):
    clock, calls = Clock(T0), []
    agent = _master_agent(agent_ctx, clock, calls)
    agent.spec = make_spec("demo", "master", token=TOKEN)
    agent.joblist = lambda port: pytest.fail("Disco asked without idle_stop")
    clock.now = T0 + 10 ** 6
    assert not agent.watch_idle() and calls == []


def test_agent_loop_enforces_a_moved_deadline(agent_ctx):
    calls, clock = [], Clock(1000)
    ctx = agent_ctx(clock=clock, power_off=lambda c: calls.append(c.now()))
    agent = Agent(ctx)
    agent.spec = make_spec("c", "master", ttl_deadline=1010)
    ttl.move(ctx, agent.spec, 1100)

    def sleep(seconds):
        clock.now += seconds
    ctx.sleep = sleep
    agent.forever(tick=5, max_ticks=100)
    assert calls == [1100]


class FakeHeartbeatMaster:
    """Answers joins with a welcome signed with KEY (the cluster token, or a forger's)."""

    def __init__(self, key, extra, mac=None):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                nonce = re.search(rb'"nonce":"([0-9a-f]{32})"', body).group(1).decode()
                welcome = P.make_welcome("demo", T0, nonce, "master", ["127.0.0.1"],
                                         fake_key(1), fake_key(2), [["master", "127.0.0.1"]])
                welcome.update(extra)
                sealed = P.seal(key, welcome)
                if mac is not None:  # an unsigned body: any mac string
                    sealed = json.dumps({"msg": welcome, "mac": mac}, sort_keys=True,
                                        separators=(",", ":")).encode()
                outer.sent += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(sealed)))
                self.end_headers()
                self.wfile.write(sealed)

        self.sent = 0
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


STOP = {"stop": "idle stop: no Disco job for 60 s", "ttl_deadline": T0 + 7200}


def _node(agent_ctx, port, calls, ttl_deadline=None):
    ctx = agent_ctx("n", hostname="node01", clock=Clock(T0), allow_loopback=True,
                    power_off=lambda c: calls.append("off"))
    agent = Agent(ctx, addresses=["127.0.0.1"])
    agent.spec = make_spec("demo", "node", master_address="127.0.0.1", token=TOKEN,
                           join_port=port, ttl_deadline=ttl_deadline)
    agent.hostname, agent.host_pubkey, agent.disco_pubkey = "node01", fake_key(3), fake_key(4)
    return agent


@pytest.mark.parametrize("forgery", [{"key": "ee" * 32}, {"key": TOKEN, "mac": "0" * 64}],
                         ids=["wrong-token", "unsigned"])
def test_forged_or_unsigned_stop_order_and_deadline_are_refused(agent_ctx, forgery):
    calls = []
    fake = FakeHeartbeatMaster(forgery["key"], STOP, mac=forgery.get("mac"))
    try:
        agent = _node(agent_ctx, fake.port, calls, ttl_deadline=T0 + 600)
        assert agent.heartbeat() is False
        assert fake.sent == 1
    finally:
        fake.close()
    assert calls == [] and agent.stopped is None
    assert ttl.deadline(agent.ctx, agent.spec) == T0 + 600  # not moved
    assert not os.path.exists(agent.ctx.path(ttl.DEADLINE_FILE))


def test_signed_stop_order_powers_the_node_off_and_moves_its_deadline(agent_ctx):
    calls = []
    fake = FakeHeartbeatMaster(TOKEN, STOP)
    try:
        agent = _node(agent_ctx, fake.port, calls, ttl_deadline=T0 + 600)
        agent.welcome = None
        assert agent.heartbeat() is True
    finally:
        fake.close()
    assert calls == ["off"] and agent.stopped == STOP["stop"]
    assert ttl.deadline(agent.ctx, agent.spec) == T0 + 7200
    state = json.load(open(agent.ctx.path("/var/lib/imagebake/state.json")))
    assert state["stopped"]["reason"] == STOP["stop"]


def test_node_ignores_a_past_deadline_and_keeps_its_own(agent_ctx):
    calls = []
    agent = _node(agent_ctx, 1, calls, ttl_deadline=T0 + 600)
    assert agent.follow({"ttl_deadline": T0 - 1}) is False
    assert agent.follow({"ttl_deadline": None}) is False
    assert ttl.deadline(agent.ctx, agent.spec) == T0 + 600 and calls == []


def _agent(agent_ctx, installed=True, started=True):
    ctx = agent_ctx(name="with" if installed else "without")
    if installed:
        exe = ctx.path("/usr/bin/disco")
        os.makedirs(os.path.dirname(exe), exist_ok=True)
        with open(exe, "w") as fh:
            fh.write("#!/bin/sh\n")
        os.chmod(exe, 0o755)
    agent = Agent(ctx)
    agent.master = Master(ctx, make_spec("demo", "master"), "master", ["10.0.0.5"],
                          fake_key(1), fake_key(2))
    if started:
        assert agent.master.start_disco()[0]
    return ctx, agent


def test_stop_runs_disco_stop_once_after_a_start(agent_ctx):
    ctx, agent = _agent(agent_ctx)
    agent.stop()
    agent.stop()
    assert [c for c in ctx.runner.calls if c[1:] == ["stop"]] == [["/usr/bin/disco", "stop"]]


def test_no_disco_stop_when_not_started_or_not_installed(agent_ctx):
    ctx, agent = _agent(agent_ctx, started=False)
    agent.stop()
    ctx2, agent2 = _agent(agent_ctx, installed=False)
    agent2.stop()
    assert not [c for c in ctx.runner.calls + ctx2.runner.calls if c[1:] == ["stop"]]


def test_sigterm_handler_only_on_the_real_root(agent_ctx):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    ctx, agent = _agent(agent_ctx)
    agent.exit_on_sigterm()
    assert signal.getsignal(signal.SIGTERM) is before
