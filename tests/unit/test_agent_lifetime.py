"""Idle stop and a moved TTL (issue 15 item 4): the idle clock with a fake clock and a
fake Disco job list, the master's stop sequence, nodes following the signed heartbeat
reply, and `extend`; forged or unsigned stop orders and extends are refused."""

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from conftest import HAVE_SSH_KEYGEN, Clock
from test_agent_cluster import TOKEN, Cluster, fake_key, free_port

from imagebake.agent import idle, ttl
from imagebake.agent import protocol as P
from imagebake.agent.loop import Agent
from imagebake.agent.master import Master
from imagebake.agent.spec import SpecError, dumps, loads, make_spec

T0 = 1700000000


# -- the idle clock (fake clock, fake job list) ------------------------------------------

def test_no_job_is_due_exactly_idle_stop_after_the_start():
    watch = idle.IdleWatch(600, T0)
    for now in range(T0, T0 + 600, 15):
        watch.observe(now, [])
        assert not watch.due(now)
    assert watch.due(T0 + 600) and watch.stop_at() == T0 + 600


def test_a_running_job_holds_the_stop_and_its_end_restarts_the_clock():
    watch = idle.IdleWatch(600, T0)
    watch.observe(T0 + 100, [[T0 + 90, "active", "job@1"]])
    for now in range(T0 + 100, T0 + 3000, 15):  # a job running far longer than idle_stop
        watch.observe(now, [(T0 + 90, "active", "job@1")])
        assert not watch.due(now)
    watch.observe(T0 + 3005, [(T0 + 90, "ready", "job@1")])  # ended since the last poll
    assert watch.last_activity == T0 + 3005
    assert not watch.due(T0 + 3005 + 599) and watch.due(T0 + 3005 + 600)
    view = watch.view(T0 + 3100)
    assert view["last_job"] == {"name": "job@1", "start": T0 + 90, "status": "ready"}
    assert view["stop_at"] == T0 + 3605 and view["idle_for"] == 95


def test_a_job_started_and_finished_between_polls_counts_from_its_start():
    watch = idle.IdleWatch(600, T0)
    watch.observe(T0 + 500, [(T0 + 450, "dead", "quick@1"), (T0 - 5000, "ready", "old@1")])
    assert watch.last_activity == T0 + 450
    assert watch.stop_at() == T0 + 1050


def test_old_jobs_and_a_silent_disco_do_not_hold_the_stop():
    watch = idle.IdleWatch(60, T0)
    watch.observe(T0 + 10, [(T0 - 100, "ready", "before-boot@1")])
    watch.observe(T0 + 30, None)  # Disco not answering: no evidence of activity
    assert watch.answering is False and watch.due(T0 + 60)
    assert "not answering" in watch.view(T0 + 60)["disco"]


def test_joblist_parsing_and_fetch_against_a_fake_disco():
    assert idle.parse_joblist("nope") is None
    assert idle.parse_joblist([[1, "active", "a"], ["x", "active", "b"], [2, "ready"]]) == [
        (1, "active", "a")]
    jobs = [[T0 + 5, "active", "wc@57"], [T0, "ready", "wc@56"]]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            body = json.dumps(jobs).encode() if self.path == idle.JOBLIST_PATH else b""
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert idle.fetch_joblist(server.server_address[1]) == [
            (T0 + 5, "active", "wc@57"), (T0, "ready", "wc@56")]
    finally:
        server.shutdown()
        server.server_close()
    assert idle.fetch_joblist(free_port(), timeout=1) is None


# -- the master's stop sequence ------------------------------------------------------------

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


# -- the spec ------------------------------------------------------------------------------

def test_spec_idle_stop_is_optional_and_positive():
    plain = make_spec("demo", "master")
    assert "idle_stop" not in plain and "idle_stop" not in dumps(plain)  # old agents read it
    assert loads(dumps(make_spec("demo", "master", idle_stop=1800)))["idle_stop"] == 1800
    for bad in (0, -60, "30m", True, 1.5, None):
        with pytest.raises(SpecError, match="idle_stop"):
            make_spec("demo", "master", idle_stop=bad) if bad is not None else loads(
                dumps(plain)[:-1] + ',"idle_stop":null}')


# -- the TTL deadline moves ------------------------------------------------------------------

def test_move_rearms_under_systemd_and_never_goes_into_the_past(agent_ctx):
    clock = Clock(10000)
    ctx = agent_ctx(clock=clock)
    os.makedirs(ctx.path("/run/systemd/system"))
    spec = make_spec("demo", "master", ttl_deadline=10000 + 600)
    assert ttl.arm(ctx, spec) == "shutdown -P +10"
    assert ttl.move(ctx, spec, 10000 + 7200) == "shutdown -P +120"
    assert ttl.deadline(ctx, spec) == 17200 and ttl.moved_deadline(ctx) == 17200
    assert os.stat(ctx.path(ttl.DEADLINE_FILE)).st_mode & 0o777 == 0o600
    for bad in (10000, 9000, 10000 + 31 * 24 * 3600, "17300"):
        with pytest.raises(ValueError):
            ttl.move(ctx, spec, bad)
    assert ttl.deadline(ctx, spec) == 17200
    assert ttl.arm(ctx, spec) == "shutdown -P +120"  # a reboot arms the moved deadline


def test_the_upstart_wait_rereads_a_moved_deadline(agent_ctx):
    clock, calls = Clock(10000), []
    ctx = agent_ctx(clock=clock, power_off=lambda c: calls.append(c.now()))
    spec = make_spec("demo", "node", master_address="10.0.0.5", ttl_deadline=10300)

    def sleep(seconds):
        clock.now += seconds
        if clock.now == 10060:  # `extend` while the job waits
            ttl.move(ctx, spec, 20000)
    ctx.sleep = sleep
    assert ttl.wait_and_power_off(ctx, spec)
    assert calls == [20000]


def test_the_wait_without_a_deadline_waits_for_one(agent_ctx):
    clock, calls = Clock(10000), []
    ctx = agent_ctx(clock=clock, power_off=lambda c: calls.append(c.now()))
    spec = make_spec("demo", "node", master_address="10.0.0.5")

    def sleep(seconds):
        clock.now += seconds
        if clock.now == 10120:
            ttl.move(ctx, spec, 10500)
    ctx.sleep = sleep
    assert not ttl.wait_and_power_off(ctx, spec)  # not --wait: nothing to do
    assert ttl.wait_and_power_off(ctx, spec, forever=True) and calls == [10500]


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


# -- nodes follow the signed heartbeat reply; forged ones are refused ------------------------

class FakeMaster:
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


def _node(agent_ctx, port, calls, ttl_deadline=None):
    ctx = agent_ctx("n", hostname="node01", clock=Clock(T0), allow_loopback=True,
                    power_off=lambda c: calls.append("off"))
    agent = Agent(ctx, addresses=["127.0.0.1"])
    agent.spec = make_spec("demo", "node", master_address="127.0.0.1", token=TOKEN,
                           join_port=port, ttl_deadline=ttl_deadline)
    agent.hostname, agent.host_pubkey, agent.disco_pubkey = "node01", fake_key(3), fake_key(4)
    return agent


STOP = {"stop": "idle stop: no Disco job for 60 s", "ttl_deadline": T0 + 7200}


@pytest.mark.parametrize("forgery", [{"key": "ee" * 32}, {"key": TOKEN, "mac": "0" * 64}],
                         ids=["wrong-token", "unsigned"])
def test_forged_or_unsigned_stop_order_and_deadline_are_refused(agent_ctx, forgery):
    calls = []
    fake = FakeMaster(forgery["key"], STOP, mac=forgery.get("mac"))
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
    fake = FakeMaster(TOKEN, STOP)
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


def test_welcome_fields_are_checked():
    welcome = P.make_welcome("demo", T0, "n" * 32, "master", ["10.0.0.5"], fake_key(1),
                             fake_key(2), [], ttl_deadline=T0, stop="idle")
    assert P.check_welcome_fields(dict(welcome), "n" * 32)
    for bad in ({"stop": ""}, {"stop": "x\ny"}, {"stop": 5}, {"ttl_deadline": "1"},
                {"ttl_deadline": -1}, {"ttl_deadline": True}):
        with pytest.raises(P.ProtocolError):
            P.check_welcome_fields(dict(welcome, **bad), "n" * 32)
    assert "stop" not in P.make_welcome("demo", T0, "n" * 32, "m", ["10.0.0.5"], fake_key(1),
                                        fake_key(2), [])


# -- extend: a signed request to the master agent --------------------------------------------

needs_keygen = pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="ssh-keygen is not installed")


def _post(port, body):
    try:
        response = urlopen(Request(f"http://127.0.0.1:{port}/v1/extend", data=body,
                                   method="POST"), timeout=5)
        return response.status, response.read()
    except HTTPError as exc:
        return exc.code, exc.read()


@needs_keygen
def test_extend_moves_the_deadline_and_nodes_follow_it(cluster):
    master = cluster.start_master()
    node = cluster.add_node(1)
    now = cluster.mctx.now()
    request = P.make_extend_request("demo", now, 7200)
    code, body = _post(cluster.port, P.seal(TOKEN, request))
    assert code == 200, body
    reply = P.open_envelope(TOKEN, body, "demo", now, "extend_reply")
    assert reply["in_reply_to"] == request["nonce"]
    assert reply["ttl_deadline"] == now + 7200 and reply["previous"] is None
    assert ttl.deadline(cluster.mctx, master.spec) == now + 7200
    assert master.master.summary()["lifetime"]["ttl_deadline"] == now + 7200
    assert node.heartbeat() is True  # the next heartbeat reply carries it
    assert ttl.deadline(node.ctx, node.spec) == now + 7200
    code, _ = _post(cluster.port, P.seal(TOKEN, request))
    assert code == 403  # a replay


@needs_keygen
@pytest.mark.parametrize("how", ["wrong-token", "unsigned", "tampered"])
def test_forged_extend_is_refused_and_nothing_moves(cluster, how):
    master = cluster.start_master()
    request = P.make_extend_request("demo", cluster.mctx.now(), 30 * 24 * 3600)
    if how == "wrong-token":
        body = P.seal("ee" * 32, request)
    elif how == "unsigned":
        body = json.dumps({"msg": request, "mac": "0" * 64}, sort_keys=True,
                          separators=(",", ":")).encode()
    else:  # signed for one hour, then changed to 30 days
        body = P.seal(TOKEN, dict(request, ttl_seconds=3600)).replace(
            b'"ttl_seconds":3600', b'"ttl_seconds":2592000')
    code, text = _post(cluster.port, body)
    assert code == 403 and b"bad mac" in text
    assert ttl.deadline(cluster.mctx, master.spec) is None
    assert not os.path.exists(cluster.mctx.path(ttl.DEADLINE_FILE))


@needs_keygen
def test_extend_with_bad_seconds_or_while_stopping_is_refused(cluster):
    master = cluster.start_master()
    for seconds in (0, -5, 31 * 24 * 3600):
        request = P.make_extend_request("demo", cluster.mctx.now(), 1)
        request["ttl_seconds"] = seconds
        code, text = _post(cluster.port, P.seal(TOKEN, request))
        assert code == 403 and b"ttl_seconds" in text
    master.master.begin_stop("idle stop: no Disco job for 60 s", cluster.mctx.now())
    code, text = _post(cluster.port, P.seal(TOKEN, P.make_extend_request(
        "demo", cluster.mctx.now(), 3600)))
    assert code == 409 and b"stopping" in text
    assert ttl.deadline(cluster.mctx, master.spec) is None


@needs_keygen
def test_stopping_master_sends_the_signed_stop_order_in_heartbeats(cluster):
    calls = []
    master = cluster.start_master()
    node = cluster.add_node(1)
    node.ctx.power_off = lambda c: calls.append("off")
    master.master.begin_stop("idle stop: no Disco job for 60 s", cluster.mctx.now())
    assert node.heartbeat() is True and calls == ["off"]
    assert master.master.told == {"node01"}


@pytest.fixture
def cluster(agent_ctx):
    c = Cluster(agent_ctx, expected=1)
    yield c
    c.master.stop()


# -- the launcher side (imagebake.lifetime) ---------------------------------------------------

def test_launcher_values_are_one_line_errors(monkeypatch):
    from imagebake import lifetime
    from imagebake.errors import ImagebakeError

    assert lifetime.idle_stop_seconds("30m") == 1800 and lifetime.idle_stop_seconds("2h") == 7200
    assert lifetime.idle_stop_seconds(None) is None and lifetime.ttl_seconds("4h") == 14400
    for bad in ("0m", "-5m", "30", "abc", "10s", "31d", "", True, 5.5):
        with pytest.raises(ImagebakeError, match="--idle-stop") as info:
            lifetime.idle_stop_seconds(bad)
        assert "\n" not in str(info.value)
    for bad in ("0h", "-1h", "5m", "forever", True):
        with pytest.raises(ImagebakeError, match="--ttl"):
            lifetime.ttl_seconds(bad)
    monkeypatch.setenv(lifetime.IDLE_MIN_ENV, "5")
    assert lifetime.idle_stop_seconds("10s") == 10


class _Target:
    def __init__(self, port):
        self.port = port

    def agent_endpoint(self, record):
        return ("127.0.0.1", self.port) if self.port else None


@needs_keygen
def test_launcher_extend_and_status_view_through_the_signed_calls(cluster, monkeypatch,
                                                                   tmp_path):
    from imagebake import lifetime
    from imagebake.errors import ImagebakeError

    monkeypatch.setenv("IMAGEBAKE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(lifetime.time, "time", lambda: float(cluster.mctx.now()))
    master = cluster.start_master()
    record = {"name": "demo", "target": "docker", "token": TOKEN, "nodes": []}
    text = lifetime.extend(_Target(cluster.port), record, "2h")
    assert "power-off at" in text and "was none" in text
    assert record["ttl_deadline"] == cluster.mctx.now() + 7200
    assert ttl.deadline(cluster.mctx, master.spec) == record["ttl_deadline"]
    life = lifetime.view(_Target(cluster.port), record, {"master": {"state": "running"}})
    assert life["source"] == "master agent" and life["ttl_moved"] is True
    lines = lifetime.render(life)
    assert "(moved by extend)" in lines[0] and "no idle stop" in lines[1]
    with pytest.raises(ImagebakeError, match="403"):  # a launcher with the wrong token
        lifetime.extend(_Target(cluster.port), dict(record, token="ee" * 32), "2h")
    with pytest.raises(ImagebakeError, match="not running"):
        lifetime.extend(_Target(None), record, "2h")
    down = lifetime.view(_Target(None), record, {"master": {"state": "exited"}})
    assert down["stopped"] == "the master is exited"
    assert any("STOPPED" in line for line in lifetime.render(down))


def test_render_shows_the_idle_state():
    from imagebake import lifetime

    watch = idle.IdleWatch(1800, T0)
    watch.observe(T0 + 100, [(T0 + 50, "ready", "wc@1")])
    life = {"now": T0 + 200, "ttl_deadline": T0 + 14400, "idle_stop": 1800,
            "idle": watch.view(T0 + 200), "stopping": None}
    text = "\n".join(lifetime.render(life))
    assert "stop after 30m 0s without a job" in text and "last job wc@1" in text
    assert "stop at 2023-11-14" in text
