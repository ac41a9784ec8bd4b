"""Integration on 127.0.0.1: a master agent and node agents in temp roots."""

import base64
import json
import os
import socket
import stat
import threading
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from conftest import HAVE_SSH_KEYGEN, snapshot

from imagebake.agent import node as N
from imagebake.agent import protocol as P
from imagebake.agent.loop import Agent
from imagebake.agent.report import status_report
from imagebake.agent.spec import dumps, make_spec

pytestmark = pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="ssh-keygen is not installed")

TOKEN = "ab" * 32
COOKIE = "C0OK1E" + "X" * 26


def free_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def write_spec(ctx, spec):
    path = ctx.path("/run/imagebake/spec.json")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as handle:
        handle.write(dumps(spec))


def fake_key(i):
    blob = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes([i]) * 32)
    return "ssh-ed25519 " + blob.decode("ascii")


class Cluster:
    def __init__(self, agent_ctx, expected=3, master_workers=0, workers=None):
        self.port = free_port()
        self.agent_ctx = agent_ctx
        common = dict(token=TOKEN, cookie=COOKIE, join_port=self.port, workers=workers,
                      expected_nodes=expected, master_workers=master_workers)
        self.master_spec = make_spec("demo", "master", master_address="127.0.0.1",
                                     hostname="master", **common)
        self.node_spec = make_spec("demo", "node", master_address="127.0.0.1", **common)
        self.mctx = agent_ctx("master", hostname="master", allow_loopback=True)
        write_spec(self.mctx, self.master_spec)
        self.master = Agent(self.mctx, bind_address="127.0.0.1", addresses=["127.0.0.1"])
        self.nodes = []

    def start_master(self):
        assert self.master.setup()
        return self.master

    def add_node(self, i):
        name = f"node{i:02d}"
        ctx = self.agent_ctx(name, hostname=name, allow_loopback=True)
        write_spec(ctx, self.node_spec)
        with open(ctx.path("/etc/resolv.conf") if os.path.isdir(ctx.path("/etc"))
                  else _mkparent(ctx.path("/etc/resolv.conf")), "w") as handle:
            handle.write("search example.internal\nnameserver 10.0.0.2\noptions ndots:1\n")
        agent = Agent(ctx, addresses=[f"127.0.0.{10 + i}"])
        assert agent.setup()
        self.nodes.append(agent)
        return agent


def _mkparent(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


@pytest.fixture
def cluster(agent_ctx):
    c = Cluster(agent_ctx)
    yield c
    c.master.stop()


def read(ctx, path):
    with open(ctx.path(path)) as handle:
        return handle.read()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_master_and_three_nodes_write_everything(cluster):
    master = cluster.start_master()
    mctx = cluster.mctx
    nodes = [cluster.add_node(i) for i in (1, 2, 3)]

    # master: registry, known_hosts pinned per node, hosts file, Disco config
    registry = json.loads(read(mctx, "/var/lib/imagebake/nodes.json"))
    assert [n["hostname"] for n in registry["nodes"]] == ["node01", "node02", "node03"]
    known = read(mctx, "/home/disco/.ssh/known_hosts").splitlines()
    host_key = master.host_pubkey.split(" ")
    assert "master,127.0.0.1,localhost {} {}".format(*tuple(host_key[:2])) in known
    for agent in nodes:
        line = "{},{} {}".format(agent.hostname, agent.addresses[0],
                             " ".join(agent.host_pubkey.split(" ")[:2]))
        assert line in known
    # least privilege: no node key is authorized on the master (master_workers = 0)
    authorized = read(mctx, "/home/disco/.ssh/authorized_keys")
    for agent in nodes:
        assert agent.disco_pubkey.split(" ")[1] not in authorized
    assert master.disco_pubkey.split(" ")[1] not in authorized
    hosts = read(mctx, "/etc/imagebake/hosts").splitlines()[1:]
    assert hosts == ["127.0.0.1 master", "127.0.0.11 node01", "127.0.0.12 node02",
                     "127.0.0.13 node03"]
    config = json.loads(read(mctx, "/usr/var/disco/disco_8989.config"))
    cores = str(os.cpu_count())
    assert config == {"hosts": [["node01", cores], ["node02", cores], ["node03", cores]],
                      "blacklist": [], "gc_blacklist": []}
    settings = read(mctx, "/etc/disco/settings.py")
    assert 'DISCO_MASTER_HOST = "master"' in settings
    assert "DDFS_BLOB_REPLICAS = 3" in settings
    assert read(mctx, "/etc/resolv.conf").splitlines()[1] == "nameserver 127.0.0.1"
    assert read(mctx, "/home/disco/.erlang.cookie") == COOKIE
    assert mode(mctx.path("/home/disco/.erlang.cookie")) == 0o400
    # the spec came from a root-only file: no copy of the secrets anywhere else
    assert not os.path.exists(mctx.path("/var/lib/imagebake/spec.json"))
    assert mode(mctx.path("/var/lib/imagebake")) == 0o700
    assert mode(mctx.path("/home/disco/.ssh")) == 0o700
    assert mode(mctx.path("/home/disco/.ssh/id_ed25519")) == 0o600

    # nodes: master's disco key authorized, master's host key pinned, resolver -> master
    for agent in nodes:
        ctx = agent.ctx
        authorized = read(ctx, "/home/disco/.ssh/authorized_keys")
        assert master.disco_pubkey in authorized
        known = read(ctx, "/home/disco/.ssh/known_hosts")
        assert "master,127.0.0.1 {}".format(" ".join(host_key[:2])) in known
        resolv = read(ctx, "/etc/resolv.conf").splitlines()
        assert resolv[1:] == ["nameserver 127.0.0.1", "search example.internal",
                              "options ndots:1"]
        assert read(ctx, "/home/disco/.erlang.cookie") == COOKIE
        assert agent.state.data["phases"]["disco"]["status"] == "ok"
        assert status_report(ctx)[1] is True

    report, ready = status_report(mctx)
    assert ready and report["joined"] == 3
    assert report["disco"] == "absent: config written, not started"
    # dnsmasq was reloaded through the runner (no init system in the temp root)
    assert any("dnsmasq" in c for c in mctx.runner.commands())


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


def test_node_cannot_claim_the_master_name_or_address(cluster):
    cluster.start_master()
    before = snapshot(cluster.mctx.root)
    for name, address in (("master", "127.0.0.30"), ("node30", "127.0.0.1")):
        ident = N.Identity(name, [address], 1, fake_key(3), fake_key(4))
        with pytest.raises(N.JoinError, match="403"):
            N.join_once(cluster.mctx, cluster.node_spec, ident)
    assert snapshot(cluster.mctx.root) == before


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


def test_status_endpoint_needs_a_signed_request(cluster):
    cluster.start_master()
    cluster.add_node(1)
    url = f"http://127.0.0.1:{cluster.port}/v1/status"
    with pytest.raises(HTTPError) as info:
        urlopen(url, timeout=5)
    assert info.value.code == 405
    req = P.make_status_request("demo", cluster.mctx.now())
    body = urlopen(Request(url, data=P.seal(TOKEN, req), method="POST"), timeout=5).read()
    reply = P.open_envelope(TOKEN, body, "demo", cluster.mctx.now(), "status_reply")
    assert reply["in_reply_to"] == req["nonce"]
    assert reply["joined"] == 1 and reply["ready"] is False and reply["expected_nodes"] == 3
    assert reply["host_pubkey"] == cluster.master.host_pubkey
    assert reply["nodes"][0]["host_pubkey"] == cluster.nodes[0].host_pubkey
    assert reply["nodes"][0]["addresses"] == ["127.0.0.11"]
    with pytest.raises(HTTPError) as info:
        urlopen(Request(url, data=P.seal("ee" * 32, req), method="POST"), timeout=5)
    assert info.value.code == 403


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


def test_keys_are_never_regenerated(cluster):
    cluster.start_master()
    agent = cluster.add_node(1)
    before = snapshot(agent.ctx.root)
    calls = len(agent.ctx.runner.calls)
    again = Agent(agent.ctx, addresses=agent.addresses)
    assert again.setup()
    after = snapshot(agent.ctx.root)
    for path in ("etc/ssh/ssh_host_ed25519_key", "home/disco/.ssh/id_ed25519",
                 "home/disco/.ssh/id_ed25519.pub"):
        assert after[path] == before[path]
    assert not [c for c in agent.ctx.runner.calls[calls:] if c[0] == "ssh-keygen"]


class FakeDisco:
    """Disco's /disco/ctrl/save_config_table on 127.0.0.1, recording the bodies."""

    def __init__(self):
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

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        thread.daemon = True
        thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_running_disco_gets_table_changes_through_its_api(agent_ctx):
    from imagebake.agent.runner import Result
    disco = FakeDisco()
    c = Cluster(agent_ctx, expected=2)
    try:
        spec = dict(c.master_spec, disco_port=disco.port)
        os.remove(c.mctx.path("/run/imagebake/spec.json"))
        os.rmdir(c.mctx.path("/run/imagebake"))
        write_spec(c.mctx, spec)
        exe = c.mctx.path("/usr/bin/disco")
        os.makedirs(os.path.dirname(exe))
        with open(exe, "w") as handle:
            handle.write("#!/bin/sh\n")
        os.chmod(exe, 0o755)
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


def test_backoff_is_capped_exponential_with_jitter():
    import random
    delays = N.backoff_delays(rng=random.Random(1))
    got = [next(delays) for _ in range(12)]
    bounds = [min(10.0, 0.5 * 2 ** i) for i in range(12)]
    for delay, bound in zip(got, bounds):
        assert bound / 2 <= delay <= bound
    assert max(got) <= 10.0 and got[-1] >= 5.0


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


def test_hostname_from_spec_is_written_in_place(agent_ctx):
    ctx = agent_ctx("h", hostname="ip-10-0-0-7")
    path = ctx.path("/etc/hostname")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as handle:
        handle.write("ip-10-0-0-7\n")
    inode = os.stat(path).st_ino
    spec = make_spec("demo", "node", master_address="127.0.0.1", hostname="node05",
                     token=TOKEN, cookie=COOKIE)
    write_spec(ctx, spec)
    agent = Agent(ctx)
    agent.state.run_phase("spec", agent.phase_spec)
    assert read(ctx, "/etc/hostname") == "node05\n" and os.stat(path).st_ino == inode
    assert ["hostname", "node05"] in ctx.runner.calls
