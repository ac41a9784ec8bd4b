"""master.py: the master serves only signed requests, records a node only at the address
its join came from, writes every file in one batch, bounds its connections, and carries
out extend and leave."""

import http.client
import json
import os
import socket
import threading
import time
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from imagebake.agent import node as N
from imagebake.agent import protocol, spec, ttl
from imagebake.agent import protocol as P
from imagebake.agent.loop import Agent
from imagebake.agent.master import JoinServer, Master

from .helpers import (
    COOKIE,
    LAUNCHER_KEY,
    TOKEN,
    Clock,
    Cluster,
    fake_key,
    needs_keygen,
    read,
    snapshot,
    with_disco,
)


@needs_keygen
def test_wrong_token_is_refused_and_nothing_written(cluster):
    cluster.start_master()
    cluster.add_node(1)
    before = snapshot(cluster.mctx.root)
    spec = dict(cluster.node_spec, token="cd" * 32)
    ident = N.Identity("node09", ["127.0.0.19"], 2, fake_key(9) + " disco@node09", fake_key(9))
    with pytest.raises(N.JoinError, match="403"):
        N.join_once(cluster.mctx, spec, ident)
    assert snapshot(cluster.mctx.root) == before
    assert "node09" not in cluster.master.master.nodes


@needs_keygen
def test_replayed_request_is_refused(cluster):
    cluster.start_master()
    msg = P.make_join("demo", cluster.mctx.now(), "node07", ["127.0.0.17"], 1,
                      fake_key(7), fake_key(8))
    body = P.seal(TOKEN, msg)
    url = f"http://127.0.0.1:{cluster.port}/v1/join"
    assert N._post(url, body, 5, "127.0.0.17")[0] == 200  # sent from the address it lists
    before = snapshot(cluster.mctx.root)
    status, reply = N._post(url, body, 5, "127.0.0.17")
    assert status == 403 and b"replayed" in reply
    assert snapshot(cluster.mctx.root) == before


@needs_keygen
def test_node_cannot_claim_the_master_name_or_address(cluster):
    cluster.start_master()
    before = snapshot(cluster.mctx.root)
    for name, address in (("master", "127.0.0.30"), ("node30", "127.0.0.1")):
        ident = N.Identity(name, [address], 1, fake_key(3), fake_key(4))
        with pytest.raises(N.JoinError, match="403"):
            N.join_once(cluster.mctx, cluster.node_spec, ident)
    assert snapshot(cluster.mctx.root) == before


@needs_keygen
def test_rejoin_is_a_no_op_and_changed_keys_replace(cluster):
    cluster.start_master()
    agent = cluster.add_node(1)
    before = snapshot(cluster.mctx.root)
    node_before = snapshot(agent.ctx.root)
    assert agent.heartbeat()
    assert snapshot(cluster.mctx.root) == before
    node_after = snapshot(agent.ctx.root)
    node_after.pop("var/lib/imagebake/state.json")
    node_before.pop("var/lib/imagebake/state.json")
    assert node_after == node_before
    # same name, new keys: the master replaces that node's entries
    ident = N.Identity("node01", ["127.0.0.11"], 2, fake_key(5) + " disco@node01", fake_key(6))
    N.join_once(cluster.mctx, cluster.node_spec, ident)
    known = read(cluster.mctx, "/home/disco/.ssh/known_hosts")
    assert fake_key(6) in known and agent.host_pubkey.split(" ")[1] not in known
    assert known.count("node01,") == 1


@needs_keygen
def test_restarted_master_keeps_its_members(cluster, agent_ctx):
    cluster.start_master()
    cluster.add_node(1)
    cluster.add_node(2)
    cluster.master.stop()
    before = snapshot(cluster.mctx.root)
    again = Agent(cluster.mctx, bind_address="127.0.0.1", addresses=["127.0.0.1"])
    assert again.setup()
    try:
        assert sorted(again.master.nodes) == ["node01", "node02"]
        after = snapshot(cluster.mctx.root)
        for path in ("etc/imagebake/hosts", "home/disco/.ssh/known_hosts",
                     "usr/var/disco/disco_8989.config", "var/lib/imagebake/nodes.json"):
            assert after[path] == before[path]
    finally:
        again.stop()


@needs_keygen
def test_sixteen_concurrent_joins(cluster):
    """Sixteen joins at once all get a welcome and all land in Disco's config (how long they
    take is a benchmark's business: `invoke bench --what cluster`, not an assertion here)."""
    cluster.start_master()
    results = {}

    def one(i):
        ident = N.Identity(f"w{i:02d}", [f"127.0.1.{i}"], 2,
                           fake_key(i) + f" disco@w{i:02d}", fake_key(100 + i))
        try:
            results[i] = N.join_once(cluster.mctx, cluster.node_spec, ident)
        except Exception as exc:  # noqa: BLE001
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(1, 17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(isinstance(r, dict) and r["type"] == "welcome" for r in results.values()), results
    assert len(results) == 16
    config = json.loads(read(cluster.mctx, "/usr/var/disco/disco_8989.config"))
    assert [h[0] for h in config["hosts"]] == [f"w{i:02d}" for i in range(1, 17)]


@needs_keygen
def test_status_endpoint_needs_a_signed_request(cluster):
    cluster.start_master()
    cluster.add_node(1)
    url = f"http://127.0.0.1:{cluster.port}/v1/status"
    with pytest.raises(HTTPError) as info:
        urlopen(url, timeout=5)
    assert info.value.code == 405
    req = P.make_status_request("demo", cluster.mctx.now())
    body = urlopen(Request(url, data=P.seal(LAUNCHER_KEY, req), method="POST"), timeout=5).read()
    reply = P.open_envelope(LAUNCHER_KEY, body, "demo", cluster.mctx.now(), "status_reply")
    assert reply["in_reply_to"] == req["nonce"]
    assert reply["joined"] == 1 and reply["ready"] is False and reply["expected_nodes"] == 3
    assert reply["host_pubkey"] == cluster.master.host_pubkey
    assert reply["nodes"][0]["host_pubkey"] == cluster.nodes[0].host_pubkey
    assert reply["nodes"][0]["addresses"] == ["127.0.0.11"]
    with pytest.raises(HTTPError) as info:
        urlopen(Request(url, data=P.seal("ee" * 32, req), method="POST"), timeout=5)
    assert info.value.code == 403


@needs_keygen
def test_master_with_workers_is_listed_and_authorizes_itself(agent_ctx):
    c = Cluster(agent_ctx, expected=1, master_workers=2, workers=3)
    try:
        master = c.start_master()
        c.add_node(1)
        config = json.loads(read(c.mctx, "/usr/var/disco/disco_8989.config"))
        assert config["hosts"] == [["master", "2"], ["node01", "3"]]
        authorized = read(c.mctx, "/home/disco/.ssh/authorized_keys")
        assert master.disco_pubkey in authorized
        assert "DDFS_TAG_REPLICAS = 2" in read(c.mctx, "/etc/disco/settings.py")
    finally:
        c.master.stop()


class FakeDisco:
    """Disco's ctrl API on 127.0.0.1 (POSTs answered "table saved!", GET
    /ddfs/ctrl/gc_start answered GC_START), recording (path, body) (None for a GET)."""

    GC_START = "GC has started"

    def __init__(self, port=0):
        from http.server import BaseHTTPRequestHandler, HTTPServer
        outer = self
        self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers["Content-Length"])
                outer.bodies.append((self.path, json.loads(self.rfile.read(length))))
                body = b'"table saved!"'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                outer.bodies.append((self.path, None))
                body = json.dumps(outer.GC_START if self.path == "/ddfs/ctrl/gc_start"
                                  else "").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        thread.daemon = True
        thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@needs_keygen
def test_running_disco_gets_table_changes_through_its_api(agent_ctx):
    from imagebake.agent.runner import Result
    disco = FakeDisco()
    c = Cluster(agent_ctx, expected=2)
    try:
        with_disco(c, disco.port)
        c.mctx.runner.results["/usr/bin/disco"] = Result(0, "Master master:8989 running")
        c.start_master()
        assert disco.bodies == [("/disco/ctrl/save_config_table", [])]
        c.node_spec = dict(c.node_spec, disco_port=disco.port)
        agent = c.add_node(1)
        assert disco.bodies[-1] == ("/disco/ctrl/save_config_table",
                                    [["node01", str(os.cpu_count())]])
        count = len(disco.bodies)
        agent.heartbeat()  # no change: no API call
        assert len(disco.bodies) == count
        assert c.master.master.disco.startswith("running")
    finally:
        c.master.stop()
        disco.close()


@needs_keygen
def test_stopped_disco_is_started_once(agent_ctx):
    c = Cluster(agent_ctx, expected=0)
    try:
        exe = c.mctx.path("/usr/local/bin/disco")
        os.makedirs(os.path.dirname(exe))
        with open(exe, "w") as handle:
            handle.write("#!/bin/sh\n")
        os.chmod(exe, 0o755)
        c.start_master()
        assert ["/usr/local/bin/disco", "start"] in c.mctx.runner.calls
        assert os.path.exists(c.mctx.path("/usr/var/disco/disco_8989.config"))
        assert c.master.master.disco == "running (started)"
    finally:
        c.master.stop()


def _join_body(now, hostname="node01", addresses=("10.0.0.11",), key=1):
    return protocol.seal(LAUNCHER_KEY, protocol.make_join("demo", now, hostname, list(addresses), 2,
                                                   fake_key(key) + " disco@x",
                                                   fake_key(key + 1)))


def _bare_master(ctx, addresses=("10.0.0.1",)):
    the_spec = spec.make_spec("demo", "master", master_address=None, hostname="master",
                              token=LAUNCHER_KEY, cookie=COOKIE, expected_nodes=1)
    return Master(ctx, the_spec, "master", list(addresses), fake_key(90) + " disco@master",
                  fake_key(91))


def test_replay_after_master_restart_is_refused(agent_ctx):
    clock = Clock(1000)
    ctx = agent_ctx(clock=clock)
    body = _join_body(1000)
    assert _bare_master(ctx).handle_join(body, "10.0.0.11")[0] == 200
    clock.now = 1030  # the master restarts: a new process, an empty cache
    code, text = _bare_master(ctx).handle_join(body, "10.0.0.11")
    assert code == 403, text


@pytest.mark.parametrize("peer", ["169.254.169.254", "0.0.0.0", "255.255.255.255",
                                  "127.0.0.5", "224.0.0.1"])
def test_unusable_peer_addresses_are_refused(agent_ctx, peer):
    ctx = agent_ctx()
    m = _bare_master(ctx)
    code, text = m.handle_join(_join_body(ctx.now(), addresses=(peer,)), peer)
    assert code == 403, text
    assert m.nodes == {}


def test_only_the_peer_address_is_recorded(agent_ctx):
    ctx = agent_ctx()
    m = _bare_master(ctx)
    body = _join_body(ctx.now(), addresses=("10.0.0.11", "10.0.0.1", "10.0.0.12",
                                            "169.254.169.254"))
    code, text = m.handle_join(body, "10.0.0.11")
    assert code == 200, text
    assert m.nodes["node01"]["address"] == "10.0.0.11"
    assert m.nodes["node01"]["addresses"] == ["10.0.0.11"]
    reply = m.summary()["nodes"][0]
    assert reply["addresses"] == ["10.0.0.11"]


def test_a_token_holder_cannot_take_another_nodes_address(agent_ctx):
    ctx = agent_ctx()
    m = _bare_master(ctx)
    assert m.handle_join(_join_body(ctx.now()), "10.0.0.11")[0] == 200
    evil = _join_body(ctx.now(), hostname="evil", addresses=("10.0.0.11",), key=5)
    code, _ = m.handle_join(evil, "10.0.0.66")
    assert code == 403
    assert sorted(m.nodes) == ["node01"] and m.nodes["node01"]["address"] == "10.0.0.11"


def _slow_client(port, stop, opened, closed, hold):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    opened.append(sock)
    try:
        sock.sendall(b"POST /v1/join HTTP/1.0\r\n")
        while not stop.is_set():
            sock.sendall(b"X")
            if stop.wait(hold):
                break
    except OSError:
        pass
    try:
        sock.settimeout(0.2)
        while sock.recv(1024):
            pass
    except OSError:
        pass
    closed.append(time.time())
    sock.close()


def test_whole_request_deadline(agent_ctx):
    ctx = agent_ctx()
    m = _bare_master(ctx, ["127.0.0.1"])
    server = JoinServer(m, "127.0.0.1", 0)
    server.request_deadline = 1.5
    server.start()
    stop = threading.Event()
    opened, closed = [], []
    start = time.time()
    thread = threading.Thread(target=_slow_client,
                              args=(server.port, stop, opened, closed, 0.3))
    thread.daemon = True
    thread.start()
    try:
        deadline = time.time() + 8
        while not closed and time.time() < deadline:
            time.sleep(0.1)
        assert closed, "a byte every 0.3 s kept the request open for 8 s"
        assert closed[0] - start < 4
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def _signed_join(port, i):
    body = _join_body(int(time.time()), hostname=f"n{i:02d}",
                      addresses=(f"127.0.0.{20 + i}",), key=i)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                      source_address=(f"127.0.0.{20 + i}", 0))
    conn.request("POST", "/v1/join", body=body)
    response = conn.getresponse()
    return response.status, response.read()


def _probe(port):
    """An unsigned status request: 403 when a slot is free; None when turned away."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/v1/status", body=b"{}")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None


def test_a_request_stuck_behind_the_lock_frees_its_slot_at_the_deadline(agent_ctx):
    """The watchdog shuts a request still running at its deadline and frees its slot even
    while its handler waits on master.lock (a slow apply): the server keeps answering
    (issue 21, M3 residual)."""
    ctx = agent_ctx(clock=time.time)
    ctx.allow_loopback = True
    m = _bare_master(ctx, ["127.0.0.1"])
    m.allow_loopback = True
    server = JoinServer(m, "127.0.0.1", 0)
    server.request_deadline = 1.0
    server.max_workers = 1
    server.start()
    answers = []
    try:
        with m.lock:  # a slow apply holds the lock
            def join():
                try:
                    answers.append(_signed_join(server.port, 1))
                except (OSError, http.client.HTTPException) as exc:
                    answers.append(exc)  # shut by the watchdog
            stuck = threading.Thread(target=join)
            stuck.daemon = True
            stuck.start()
            time.sleep(0.3)
            assert _probe(server.port) is None  # the one slot is taken
            codes = []
            until = time.time() + 8
            while time.time() < until and 403 not in codes:
                time.sleep(0.3)
                codes.append(_probe(server.port))
            assert 403 in codes, f"the slot stayed taken while the lock was held: {codes}"
        stuck.join(10)
    finally:
        server.shutdown()
        server.server_close()


def test_joins_complete_under_a_slow_connection_flood(agent_ctx):
    ctx = agent_ctx(clock=time.time)
    ctx.allow_loopback = True
    m = _bare_master(ctx, ["127.0.0.1"])
    m.allow_loopback = True
    server = JoinServer(m, "127.0.0.1", 0)
    server.start()
    stop = threading.Event()
    opened, closed = [], []
    threads_before = threading.active_count()
    flood = [threading.Thread(target=_slow_client,
                              args=(server.port, stop, opened, closed, 0.5))
             for _ in range(150)]
    try:
        for t in flood:
            t.daemon = True
            t.start()
        time.sleep(1.0)
        server_threads = threading.active_count() - threads_before - len(flood)
        results = []
        for i in range(1, 9):
            start = time.time()
            status, body = _signed_join(server.port, i)
            results.append((status, time.time() - start))
        assert all(status == 200 for status, _ in results), results
        assert max(took for _, took in results) < 3, results
        assert server_threads <= 40, server_threads
        assert len(closed) >= 100, "the per-peer cap did not turn the flood away"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


@needs_keygen
def test_master_key_is_authorized_with_restrictions(agent_ctx):
    c = Cluster(agent_ctx, expected=1)
    try:
        c.start_master()
        agent = c.add_node(1)
        with open(agent.ctx.disco_path(".ssh", "authorized_keys")) as handle:
            lines = [line for line in handle.read().splitlines()
                     if c.master.disco_pubkey.split()[1] in line]
        assert len(lines) == 1
        options = lines[0].split(" ssh-ed25519 ")[0].split(",")
        assert 'from="127.0.0.1"' in options
        for opt in ("no-port-forwarding", "no-agent-forwarding", "no-X11-forwarding"):
            assert opt in options
    finally:
        c.master.stop()


@needs_keygen
def test_status_replay_is_refused(agent_ctx):
    c = Cluster(agent_ctx, expected=1)
    try:
        c.start_master()
        url = f"http://127.0.0.1:{c.port}/v1/status"
        body = protocol.seal(LAUNCHER_KEY, protocol.make_status_request("demo", c.mctx.now()))
        urlopen(Request(url, data=body, method="POST"), timeout=5).read()
        with pytest.raises(HTTPError) as info:
            urlopen(Request(url, data=body, method="POST"), timeout=5)
        assert info.value.code == 403 and b"replayed" in info.value.read()
    finally:
        c.master.stop()


def _post_extend(port, body):
    try:
        response = urlopen(Request(f"http://127.0.0.1:{port}/v1/extend", data=body,
                                   method="POST"), timeout=5)
        return response.status, response.read()
    except HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def one_node_cluster(agent_ctx):
    c = Cluster(agent_ctx, expected=1)
    yield c
    c.master.stop()


@needs_keygen
def test_extend_moves_the_deadline_and_nodes_follow_it(one_node_cluster):
    master = one_node_cluster.start_master()
    node = one_node_cluster.add_node(1)
    now = one_node_cluster.mctx.now()
    request = P.make_extend_request("demo", now, 7200)
    code, body = _post_extend(one_node_cluster.port, P.seal(LAUNCHER_KEY, request))
    assert code == 200, body
    reply = P.open_envelope(LAUNCHER_KEY, body, "demo", now, "extend_reply")
    assert reply["in_reply_to"] == request["nonce"]
    assert reply["ttl_deadline"] == now + 7200 and reply["previous"] is None
    assert ttl.deadline(one_node_cluster.mctx, master.spec) == now + 7200
    assert master.master.summary()["lifetime"]["ttl_deadline"] == now + 7200
    assert node.heartbeat() is True  # the next heartbeat reply carries it
    assert ttl.deadline(node.ctx, node.spec) == now + 7200
    code, _ = _post_extend(one_node_cluster.port, P.seal(LAUNCHER_KEY, request))
    assert code == 403  # a replay


@needs_keygen
@pytest.mark.parametrize("how", ["wrong-token", "unsigned", "tampered"])
def test_forged_extend_is_refused_and_nothing_moves(one_node_cluster, how):
    master = one_node_cluster.start_master()
    request = P.make_extend_request("demo", one_node_cluster.mctx.now(), 30 * 24 * 3600)
    if how == "wrong-token":
        body = P.seal("ee" * 32, request)
    elif how == "unsigned":
        body = json.dumps({"msg": request, "mac": "0" * 64}, sort_keys=True,
                          separators=(",", ":")).encode()
    else:  # signed for one hour, then changed to 30 days
        body = P.seal(LAUNCHER_KEY, dict(request, ttl_seconds=3600)).replace(
            b'"ttl_seconds":3600', b'"ttl_seconds":2592000')
    code, text = _post_extend(one_node_cluster.port, body)
    assert code == 403 and b"bad mac" in text
    assert ttl.deadline(one_node_cluster.mctx, master.spec) is None
    assert not os.path.exists(one_node_cluster.mctx.path(ttl.DEADLINE_FILE))


@needs_keygen
def test_extend_with_bad_seconds_or_while_stopping_is_refused(one_node_cluster):
    master = one_node_cluster.start_master()
    for seconds in (0, -5, 31 * 24 * 3600):
        request = P.make_extend_request("demo", one_node_cluster.mctx.now(), 1)
        request["ttl_seconds"] = seconds
        code, text = _post_extend(one_node_cluster.port, P.seal(LAUNCHER_KEY, request))
        assert code == 403 and b"ttl_seconds" in text
    master.master.begin_stop("idle stop: no Disco job for 60 s", one_node_cluster.mctx.now())
    code, text = _post_extend(one_node_cluster.port, P.seal(LAUNCHER_KEY, P.make_extend_request(
        "demo", one_node_cluster.mctx.now(), 3600)))
    assert code == 409 and b"stopping" in text
    assert ttl.deadline(one_node_cluster.mctx, master.spec) is None


@needs_keygen
def test_stopping_master_sends_the_signed_stop_order_in_heartbeats(one_node_cluster):
    calls = []
    master = one_node_cluster.start_master()
    node = one_node_cluster.add_node(1)
    node.ctx.power_off = lambda c: calls.append("off")
    master.master.begin_stop("idle stop: no Disco job for 60 s", one_node_cluster.mctx.now())
    assert node.heartbeat() is True and calls == ["off"]
    assert master.master.told == {"node01"}


def _post_leave(port, body):
    try:
        response = urlopen(Request(f"http://127.0.0.1:{port}/v1/leave", data=body,
                                   method="POST"), timeout=5)
        return response.status, response.read()
    except HTTPError as exc:
        return exc.code, exc.read()


@needs_keygen
def test_leave_removes_the_node_everywhere_and_its_heartbeat_stays_out(cluster):
    master = cluster.start_master()
    nodes = [cluster.add_node(i) for i in (1, 2, 3)]
    mctx = cluster.mctx
    assert master.master.summary()["ddfs_replicas"] == 3
    request = P.make_leave_request("demo", mctx.now(), ["node03", "node09"])
    code, body = _post_leave(cluster.port, P.seal(LAUNCHER_KEY, request))
    assert code == 200, body
    reply = P.open_envelope(LAUNCHER_KEY, body, "demo", mctx.now(), "leave_reply")
    assert reply["in_reply_to"] == request["nonce"]
    assert reply["removed"] == ["node03"] and reply["unknown"] == ["node09"]
    assert [h[0] for h in reply["hosts"]] == ["master", "node01", "node02"]

    registry = json.loads(read(mctx, "/var/lib/imagebake/nodes.json"))
    assert [n["hostname"] for n in registry["nodes"]] == ["node01", "node02"]
    assert "node03" in registry["left"]
    config = json.loads(read(mctx, "/usr/var/disco/disco_8989.config"))
    assert [h for h, _ in config["hosts"]] == ["node01", "node02"]
    assert "node03" not in read(mctx, "/etc/imagebake/hosts")
    known = read(mctx, "/home/disco/.ssh/known_hosts")
    assert "node03" not in known and nodes[2].host_pubkey.split(" ")[1] not in known
    assert "DDFS_BLOB_REPLICAS = 3" in read(mctx, "/etc/disco/settings.py")

    # the removed machine keeps heartbeating until it is terminated: refused
    assert nodes[2].heartbeat() is False
    assert "node03" not in master.master.nodes
    assert "node03" not in read(mctx, "/etc/imagebake/hosts")
    assert nodes[0].heartbeat() is True  # the others stay members
    code, _ = _post_leave(cluster.port, P.seal(LAUNCHER_KEY, request))
    assert code == 403  # a replay


WATCHED = ("/var/lib/imagebake/nodes.json", "/home/disco/.ssh/known_hosts",
           "/etc/imagebake/hosts", "/usr/var/disco/disco_8989.config")


def _files(ctx):
    return {p: read(ctx, p) for p in WATCHED}


@needs_keygen
@pytest.mark.parametrize("how", ["wrong-token", "unsigned", "tampered", "master",
                                 "other-cluster", "bad-names"])
def test_forged_or_bad_leave_is_refused_and_nothing_changes(cluster, how):
    master = cluster.start_master()
    for i in (1, 2, 3):
        cluster.add_node(i)
    before = _files(cluster.mctx)
    request = P.make_leave_request("demo", cluster.mctx.now(), ["node02"])
    if how == "wrong-token":
        body, says = P.seal("ee" * 32, request), b"bad mac"
    elif how == "unsigned":
        body = json.dumps({"msg": request, "mac": "0" * 64}, sort_keys=True,
                          separators=(",", ":")).encode()
        says = b"bad mac"
    elif how == "tampered":  # signed for node02, changed to node01 afterwards
        body = P.seal(LAUNCHER_KEY, request).replace(b'"node02"', b'"node01"')
        says = b"bad mac"
    elif how == "master":
        body = P.seal(LAUNCHER_KEY, dict(request, hostnames=["master"]))
        says = b"master cannot leave"
    elif how == "other-cluster":
        body, says = P.seal(LAUNCHER_KEY, dict(request, cluster="other")), b"cluster"
    else:
        body, says = P.seal(LAUNCHER_KEY, dict(request, hostnames=["node02", "x y"])), b"hostnames"
    code, text = _post_leave(cluster.port, body)
    assert code == 403 and says in text, text
    assert _files(cluster.mctx) == before
    assert sorted(master.master.nodes) == ["node01", "node02", "node03"]


# A node's join token joins and heartbeats as that node, and nothing more: every
# cluster-wide order and the status the launcher pins host keys from need the launcher's
# own key, which only the master's spec carries (issue 21 N1).

def _post(port, path, body):
    try:
        response = urlopen(Request(f"http://127.0.0.1:{port}{path}", data=body,
                                   method="POST"), timeout=5)
        return response.status, response.read()
    except HTTPError as exc:
        return exc.code, exc.read()


@needs_keygen
def test_a_nodes_token_orders_nothing_cluster_wide(cluster):
    master = cluster.start_master()
    cluster.add_node(1)
    node02 = cluster.add_node(2)
    node_token = cluster.node_spec["token"]  # what root on any node can read
    now = cluster.mctx.now()
    before = snapshot(cluster.mctx.root)
    orders = {"extend to 30 days": ("/v1/extend", P.make_extend_request("demo", now,
                                                                        P.MAX_EXTEND)),
              "stop in 1 s": ("/v1/extend", P.make_extend_request("demo", now, 1)),
              "leave node02": ("/v1/leave", P.make_leave_request("demo", now, ["node02"])),
              "status": ("/v1/status", P.make_status_request("demo", now))}
    for what, (path, msg) in orders.items():
        code, text = _post(cluster.port, path, P.seal(node_token, msg))
        assert code == 403, (what, text)
    assert snapshot(cluster.mctx.root) == before
    assert ttl.deadline(cluster.mctx, master.spec) is None
    assert sorted(master.master.nodes) == ["node01", "node02"]
    assert node02.heartbeat() and node02.stopped is None


@needs_keygen
def test_the_launchers_key_is_accepted_for_every_order(cluster):
    master = cluster.start_master()
    cluster.add_node(1)
    cluster.add_node(2)
    key = cluster.master_spec["launcher_key"]
    now = cluster.mctx.now()
    for path, msg, reply_type in (
            ("/v1/status", P.make_status_request("demo", now), "status_reply"),
            ("/v1/extend", P.make_extend_request("demo", now, 3600), "extend_reply"),
            ("/v1/leave", P.make_leave_request("demo", now, ["node02"]), "leave_reply")):
        code, raw = _post(cluster.port, path, P.seal(key, msg))
        assert code == 200, (path, raw)
        reply = P.open_envelope(key, raw, "demo", now, reply_type)
        assert reply["in_reply_to"] == msg["nonce"]
        with pytest.raises(P.ProtocolError, match="bad mac"):  # sealed with the key, not the token
            P.open_envelope(cluster.node_spec["token"], raw, "demo", now, reply_type)
    assert ttl.deadline(cluster.mctx, master.spec) == now + 3600
    assert sorted(master.master.nodes) == ["node01"]


def test_a_master_without_a_launcher_key_refuses_every_order(agent_ctx):
    ctx = agent_ctx()
    m = _bare_master(ctx)
    del m.spec["launcher_key"]
    for path, msg in (("/v1/extend", P.make_extend_request("demo", ctx.now(), 3600)),
                      ("/v1/status", P.make_status_request("demo", ctx.now()))):
        for key in (TOKEN, "00" * 32):
            code, text = m.handle(path, P.seal(key, msg), "10.0.0.9")
            assert code == 403 and b"launcher key" in text
    assert m.handle_join(_join_body(ctx.now()), "10.0.0.11")[0] == 200


def test_a_token_holder_cannot_take_over_another_nodes_name(agent_ctx):
    ctx = agent_ctx()
    m = _bare_master(ctx)
    assert m.handle_join(_join_body(ctx.now()), "10.0.0.11")[0] == 200
    held = dict(m.nodes["node01"])
    evil = _join_body(ctx.now(), hostname="node01", addresses=("10.0.0.66",), key=5)
    code, text = m.handle_join(evil, "10.0.0.66")
    assert code == 403 and b"held by another machine" in text
    assert m.nodes == {"node01": held}
    # the same machine (same host key) moving to a new address is still itself
    moved = _join_body(ctx.now(), hostname="node01", addresses=("10.0.0.12",))
    assert m.handle_join(moved, "10.0.0.12")[0] == 200
    assert m.nodes["node01"]["address"] == "10.0.0.12"


def _trusted_join(now, trusted, hostname="node01", address="10.0.0.11", key=1):
    return protocol.seal(LAUNCHER_KEY, protocol.make_join(
        "demo", now, hostname, [address], 2, fake_key(key) + " disco@x", fake_key(key + 1),
        trusted=trusted))


def _table(ctx, port=8989):
    """Host names in Disco's hosts table (its file on the master)."""
    text = read(ctx, f"/usr/var/disco/disco_{port}.config")
    return [h for h, _ in json.loads(text)["hosts"]]


def test_a_node_enters_disco_s_table_only_once_it_trusts_the_master(agent_ctx):
    """Issue 20 item 5: a first join ("trusted": false) puts the node in DNS and
    known_hosts but not in Disco's table (Disco would ssh to it before it authorized the
    master's key); its trusted join lets it in; a member in the table never leaves it
    through a join (an agent restart re-joins untrusted with the same keys)."""
    ctx = agent_ctx()
    m = _bare_master(ctx)
    m.apply()
    assert m.handle_join(_trusted_join(ctx.now(), False), "10.0.0.11")[0] == 200
    assert "node01" in read(ctx, "/etc/imagebake/hosts")
    assert "10.0.0.11" in read(ctx, "/home/disco/.ssh/known_hosts")
    assert _table(ctx) == []
    assert m.summary()["setting_up"] == ["node01"]
    assert m.summary()["ready"] is False  # joined, but not in Disco's table yet
    assert m.handle_join(_trusted_join(ctx.now(), True), "10.0.0.11")[0] == 200
    assert _table(ctx) == ["node01"]
    assert m.summary()["setting_up"] == []
    assert m.summary()["ready"] is True
    assert m.handle_join(_trusted_join(ctx.now(), False), "10.0.0.11")[0] == 200
    assert _table(ctx) == ["node01"]
    # a new machine under the name (new keys) waits outside again until it trusts us
    assert m.handle_join(_trusted_join(ctx.now(), False, key=7), "10.0.0.11")[0] == 200
    assert _table(ctx) == []


@needs_keygen
def test_a_booted_node_is_in_disco_s_table_without_waiting_for_a_heartbeat(agent_ctx):
    """The node's boot ends with one trusted join (Agent.confirm)."""
    c = Cluster(agent_ctx, expected=1)
    try:
        c.start_master()
        c.add_node(1)
        assert _table(c.mctx) == ["node01"]
        assert c.master.master.summary()["setting_up"] == []
    finally:
        c.master.stop()


class _SlowStart:
    """A runner whose `disco start` blocks until released (the real one takes seconds:
    Python, two probe VMs, the detached VM)."""

    def __init__(self, inner):
        self.inner = inner
        self.started = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, argv, input_text=None, env=None):
        if argv[1:] == ["start"]:
            self.started.set()
            assert self.release.wait(20)
        return self.inner.run(argv, input_text, env)


@needs_keygen
def test_joins_go_on_while_disco_starts_and_the_table_reaches_it_once_it_answers(agent_ctx):
    """Issue 20 item 5: `disco start` runs outside the master's lock (nodes that joined
    meanwhile used to wait for it, time out after 5 s and back off); Disco answers its API
    only seconds after `disco start` returned, and the table is pushed once it does."""
    from imagebake.agent.runner import Result

    from .helpers import free_port

    c = Cluster(agent_ctx, expected=1)
    port = free_port()
    with_disco(c, port)
    slow = c.mctx.runner = _SlowStart(c.mctx.runner)
    slow.inner.results["/usr/bin/disco"] = Result(0, "Master master:8989 stopped")
    booted = threading.Thread(target=c.start_master)
    booted.start()
    disco = None
    try:
        assert slow.started.wait(20)
        # `disco start` is running: a node boots, joins and trusts, all meanwhile
        node = threading.Thread(target=c.add_node, args=(1,))
        node.daemon = True
        node.start()
        node.join(15)
        assert not node.is_alive(), "the node's join waited for `disco start`"
        assert _table(c.mctx, port) == ["node01"]
        slow.release.set()
        booted.join(20)
        assert c.master.master.disco == "running (started)"
        # Disco's web server comes up later: the pusher hands it the table then
        disco = FakeDisco(port)
        deadline = time.time() + 10
        while not disco.bodies and time.time() < deadline:
            time.sleep(0.05)
        assert disco.bodies == [("/disco/ctrl/save_config_table",
                                 [["node01", str(os.cpu_count())]])]
        time.sleep(1.2)  # pushed once: nothing pending, nothing sent again
        assert len(disco.bodies) == 1
        assert c.master.master.disco.startswith("running: 1 host")
    finally:
        slow.release.set()
        booted.join(20)
        c.master.stop()
        if disco is not None:
            disco.close()
