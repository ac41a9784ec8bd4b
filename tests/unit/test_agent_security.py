"""Issue 13's agent findings, each reproduced as an attack on the agent in a temp root.

C1 runs as root with "disco" played by the real user nobody (uid 65534), so the
agent's chown/chmod calls are real; every test checks that nothing outside
disco's own files was touched.
"""

import http.client
import json
import os
import pwd
import re
import socket
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from conftest import HAVE_SSH_KEYGEN, Clock
from test_agent_cluster import COOKIE, TOKEN, Cluster, fake_key, free_port, write_spec

from imagebake.agent import context as C
from imagebake.agent import disco_config, keys, node, protocol, source, spec, sshfiles
from imagebake.agent import state as S
from imagebake.agent.loop import Agent
from imagebake.agent.master import JoinServer, Master

ROOT = os.geteuid() == 0
NOBODY = 65534
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (real chown to uid 65534)")
needs_keygen = pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="ssh-keygen is not installed")


def _has_nobody():
    try:
        return pwd.getpwnam("nobody").pw_uid == NOBODY
    except KeyError:
        return False


@pytest.fixture
def disco_is_nobody(monkeypatch):
    if not (ROOT and _has_nobody()):
        pytest.skip("needs root and the user nobody (uid 65534)")
    monkeypatch.setattr(C, "DISCO_USER", "nobody")


def owned_dir(path, uid=NOBODY, mode=0o755):
    os.makedirs(path, exist_ok=True)
    os.chown(path, uid, uid)
    os.chmod(path, mode)
    return path


def root_file(path, text="root's secret\n", mode=0o640):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chown(path, 0, 0)
    os.chmod(path, mode)
    return path


def fingerprint(path):
    st = os.lstat(path)
    with open(path, "rb") as handle:
        return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), handle.read())


def disco_home(ctx):
    home = ctx.disco_home()
    owned_dir(home)
    owned_dir(os.path.join(home, ".ssh"), mode=0o700)
    return home


# -- C1: symlinks in disco-writable directories -------------------------------------

@needs_keygen
def test_c1a_key_replaced_by_a_symlink_to_a_root_file(agent_ctx, disco_is_nobody):
    ctx = agent_ctx()
    home = disco_home(ctx)
    keys.ensure_disco_key(ctx, "node01")
    secret = root_file(ctx.path("/etc/shadow"))
    pub_secret = root_file(ctx.path("/etc/ssh/ssh_host_ed25519_key.pub"),
                           fake_key(1) + "\n", mode=0o644)
    before = fingerprint(secret), fingerprint(pub_secret)
    key = os.path.join(home, ".ssh", "id_ed25519")
    os.unlink(key)
    os.symlink(secret, key)  # what disco can do in its own ~/.ssh
    os.unlink(key + ".pub")
    os.symlink(pub_secret, key + ".pub")
    with pytest.raises(Exception):  # noqa: B017 - refusing is the point, any error will do
        keys.ensure_disco_key(ctx, "node01")
    assert (fingerprint(secret), fingerprint(pub_secret)) == before


@needs_keygen
def test_c1a_dangling_key_symlink_is_not_written_through(agent_ctx, disco_is_nobody):
    ctx = agent_ctx()
    home = disco_home(ctx)
    target = ctx.path("/etc/cron.d/pwned")
    os.symlink(target, os.path.join(home, ".ssh", "id_ed25519"))
    with pytest.raises(Exception):  # noqa: B017
        keys.ensure_disco_key(ctx, "node01")
    assert not os.path.lexists(target) and not os.path.lexists(target + ".pub")


def test_c1b_planted_temp_file_symlink(agent_ctx, disco_is_nobody):
    ctx = agent_ctx()
    home = disco_home(ctx)
    target = ctx.path("/etc/sudoers.d/pwned")
    os.makedirs(os.path.dirname(target))
    ssh = os.path.join(home, ".ssh")
    for pid in (os.getpid(), os.getpid() + 1):  # the old predictable names
        for name in ("known_hosts", "authorized_keys"):
            os.symlink(target, os.path.join(ssh, f"{name}.tmp.{pid}"))
    sshfiles.write_known_hosts(ctx, ["master,10.0.0.5 " + fake_key(2)])
    sshfiles.write_authorized_keys(ctx, [fake_key(3)])
    assert not os.path.lexists(target)
    known = os.path.join(ssh, "known_hosts")
    st = os.lstat(known)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == NOBODY
    assert stat.S_IMODE(st.st_mode) == 0o644


def test_c1c_ssh_dir_replaced_by_a_symlink_to_a_root_dir(agent_ctx, disco_is_nobody):
    ctx = agent_ctx()
    home = owned_dir(ctx.disco_home())
    root_ssh = ctx.path("/root/.ssh")
    os.makedirs(root_ssh, mode=0o700)
    os.chmod(root_ssh, 0o700)
    root_file(os.path.join(root_ssh, "authorized_keys"), "ssh-ed25519 AAAAroot\n", 0o600)
    before = (os.stat(root_ssh).st_uid, stat.S_IMODE(os.stat(root_ssh).st_mode),
              sorted(os.listdir(root_ssh)),
              fingerprint(os.path.join(root_ssh, "authorized_keys")))
    os.symlink(root_ssh, os.path.join(home, ".ssh"))
    with pytest.raises(Exception):  # noqa: B017
        sshfiles.write_authorized_keys(ctx, [fake_key(3)])
    with pytest.raises(Exception):  # noqa: B017
        sshfiles.write_known_hosts(ctx, ["master " + fake_key(2)])
    after = (os.stat(root_ssh).st_uid, stat.S_IMODE(os.stat(root_ssh).st_mode),
             sorted(os.listdir(root_ssh)),
             fingerprint(os.path.join(root_ssh, "authorized_keys")))
    assert after == before


def test_c1_erlang_cookie_symlink(agent_ctx, disco_is_nobody):
    ctx = agent_ctx()
    home = disco_home(ctx)
    secret = root_file(ctx.path("/etc/shadow"))
    before = fingerprint(secret)
    os.symlink(secret, os.path.join(home, ".erlang.cookie"))
    for pid in (os.getpid(), os.getpid() + 1):
        os.symlink(ctx.path("/etc/pwned"), os.path.join(home, f".erlang.cookie.tmp.{pid}"))
    keys.write_erlang_cookie(ctx, COOKIE)
    assert fingerprint(secret) == before and not os.path.lexists(ctx.path("/etc/pwned"))
    cookie = os.path.join(home, ".erlang.cookie")
    assert fingerprint(cookie) == (NOBODY, NOBODY, 0o400, COOKIE.encode())


def test_c1d_disco_config_in_disco_owned_dir(agent_ctx, disco_is_nobody):
    ctx = agent_ctx()
    the_spec = spec.make_spec("demo", "master", master_address="10.0.0.5")
    disco_root = owned_dir(ctx.path(disco_config.DISCO_ROOT))
    secret = root_file(ctx.path("/etc/shadow"))
    before = fingerprint(secret)
    config = ctx.path(disco_config.config_path(the_spec))
    os.symlink(secret, config)
    for pid in (os.getpid(), os.getpid() + 1):
        os.symlink(ctx.path("/etc/pwned"),
                   os.path.join(disco_root, f"disco_8989.config.tmp.{pid}"))
    disco_config.write_config(ctx, the_spec, [["node01", "2"]])
    assert fingerprint(secret) == before and not os.path.lexists(ctx.path("/etc/pwned"))
    st = os.lstat(config)
    assert stat.S_ISREG(st.st_mode)
    assert json.loads(open(config).read())["hosts"] == [["node01", "2"]]
    # where disco could replace the directory itself by a link, that link is refused
    owned_dir(os.path.dirname(disco_root))
    os.rename(disco_root, disco_root + ".old")
    os.symlink(ctx.path("/etc"), disco_root)
    with pytest.raises(Exception):  # noqa: B017
        disco_config.write_config(ctx, the_spec, [["node02", "2"]])
    assert fingerprint(secret) == before
    assert not os.path.exists(ctx.path("/etc/disco_8989.config"))


def test_c1_reading_through_a_symlink_leaks_nothing(agent_ctx, disco_is_nobody):
    """known_hosts -> /etc/shadow: the merge must not copy root's file into disco's."""
    ctx = agent_ctx()
    home = disco_home(ctx)
    secret = root_file(ctx.path("/etc/shadow"), "root:$6$secret-hash:1:0:99999:7:::\n")
    os.symlink(secret, os.path.join(home, ".ssh", "known_hosts"))
    sshfiles.write_known_hosts(ctx, ["master " + fake_key(2)])
    with open(os.path.join(home, ".ssh", "known_hosts")) as handle:
        assert "secret-hash" not in handle.read()


# -- state.save, loose directories ----------------------------------------------------

def test_state_dir_loose_is_tightened_and_planted_temp_ignored(agent_ctx):
    ctx = agent_ctx()
    state_dir = ctx.path(S.STATE_DIR)
    os.makedirs(state_dir)
    os.chmod(state_dir, 0o777)
    target = ctx.path("/etc/pwned")
    for pid in (os.getpid(), os.getpid() + 1):
        os.symlink(target, ctx.path(S.STATE_FILE) + f".tmp.{pid}")
    S.State(ctx).set("role", "node")
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    assert not os.path.lexists(target)
    assert stat.S_IMODE(os.stat(ctx.path(S.STATE_FILE)).st_mode) == 0o600


@needs_root
def test_state_dir_owned_by_another_user_is_refused(agent_ctx):
    ctx = agent_ctx()
    state_dir = owned_dir(ctx.path(S.STATE_DIR), mode=0o700)
    with pytest.raises(OSError):
        S.State(ctx).set("role", "node")
    assert os.listdir(state_dir) == []


# -- L1: validators match the whole string --------------------------------------------

@pytest.mark.parametrize("check,value", [
    (spec.is_ipv4, "127.0.0.31\n"),
    (spec.is_short_hostname, "evil\n"),
    (spec.is_cluster_name, "evil\n"),
    (spec.is_address, "evil.example.com\n"),
    (spec.is_address, "10.0.0.5\n"),
    (protocol.is_pubkey, fake_key(1) + "\n"),
])
def test_l1_validators_refuse_a_trailing_newline(check, value):
    assert check(value.rstrip("\n"))
    assert not check(value)


@pytest.mark.parametrize("comment", [
    "x\x00y", "x\x1b[2Jy", "x\x0by", "x\x0cy", "x\x1cy", "x\x85y", "x\u2028y", "x\u2029y",
])
def test_l1_pubkey_comment_is_printable_ascii(comment):
    # The welcome's disco_pubkey goes, comment included, into a node's authorized_keys
    # (root writes it; merge_block re-reads it with splitlines()) and into logs: the JSON
    # \u escapes let a token holder put any character but \r \n there.
    assert protocol.is_pubkey(fake_key(1) + " disco@master")
    assert not protocol.is_pubkey(fake_key(1) + " " + comment)
    msg = {"in_reply_to": "a" * 32, "master_hostname": "master",
           "master_addresses": ["10.0.0.5"], "disco_pubkey": fake_key(1) + " " + comment,
           "host_pubkey": fake_key(2), "hosts": []}
    with pytest.raises(protocol.ProtocolError):
        protocol.check_welcome_fields(msg, "a" * 32)


@pytest.mark.parametrize("field,value", [
    ("cluster", "evil\n"), ("hostname", "evil\n"), ("token", "ab" * 32 + "\n"),
    ("cookie", COOKIE + "\n"),
])
def test_l1_spec_refuses_a_trailing_newline(field, value):
    good = spec.make_spec("demo", "node", master_address="10.0.0.5", token=TOKEN,
                          cookie=COOKIE, hostname="node01")
    spec.validate_spec(good)
    with pytest.raises(spec.SpecError):
        spec.validate_spec(dict(good, **{field: value}))
    with pytest.raises(spec.SpecError):
        spec.validate_spec(dict(good, master=dict(good["master"], address="10.0.0.5\n")))
    with pytest.raises(spec.SpecError):
        spec.validate_spec(dict(good, master=dict(good["master"], name="master\n")))


def test_l1_protocol_refuses_newlines_in_nonce_and_addresses():
    msg = protocol.make_join("demo", 1000, "node01", ["10.0.0.11"], 1, fake_key(1),
                             fake_key(2))
    for over in ({"nonce": msg["nonce"] + "\n"}, {"addresses": ["10.0.0.11\n"]},
                 {"hostname": "node01\n"}):
        bad = dict(msg, **over)
        with pytest.raises(protocol.ProtocolError):
            protocol.check_join_fields(
                protocol.open_envelope(TOKEN, protocol.seal(TOKEN, bad), "demo", 1000, "join"))


# -- L2: MAC before parsing -------------------------------------------------------------

def test_l2_deep_nesting_is_a_403_not_a_traceback():
    body = b'{"mac":"' + b"0" * 64 + b'","msg":' + b"[" * 30000 + b"]" * 30000 + b"}"
    with pytest.raises(protocol.ProtocolError):
        protocol.open_envelope(TOKEN, body, "demo", 1000, "join")
    body = b'{"msg":' + b"[" * 30000 + b"]" * 30000 + b',"mac":"00"}'
    with pytest.raises(protocol.ProtocolError):
        protocol.open_envelope(TOKEN, body, "demo", 1000, "join")


def test_l2_reencoded_body_is_refused():
    msg = protocol.make_join("demo", 1000, "node01", ["10.0.0.11"], 1, fake_key(1),
                             fake_key(2))
    good = protocol.seal(TOKEN, msg)
    assert protocol.open_envelope(TOKEN, good, "demo", 1000, "join") == msg
    spaced = json.dumps(json.loads(good.decode()), indent=1).encode()
    with pytest.raises(protocol.ProtocolError):
        protocol.open_envelope(TOKEN, spaced, "demo", 1000, "join")


# -- L3: the nonce cache ---------------------------------------------------------------------

def _master(ctx, addresses=("10.0.0.1",)):
    the_spec = spec.make_spec("demo", "master", master_address=None, hostname="master",
                              token=TOKEN, cookie=COOKIE, expected_nodes=1)
    return Master(ctx, the_spec, "master", list(addresses), fake_key(90) + " disco@master",
                  fake_key(91))


def _join_body(now, hostname="node01", addresses=("10.0.0.11",), key=1):
    return protocol.seal(TOKEN, protocol.make_join("demo", now, hostname, list(addresses), 2,
                                                   fake_key(key) + " disco@x",
                                                   fake_key(key + 1)))


def test_l3_replay_after_master_restart_is_refused(agent_ctx):
    clock = Clock(1000)
    ctx = agent_ctx(clock=clock)
    body = _join_body(1000)
    assert _master(ctx).handle_join(body, "10.0.0.11")[0] == 200
    clock.now = 1030  # the master restarts: a new process, an empty cache
    code, text = _master(ctx).handle_join(body, "10.0.0.11")
    assert code == 403, text


def test_l3_a_full_cache_still_takes_fresh_nonces_and_refuses_old_replays():
    cache = protocol.ReplayCache(limit=100)
    for i in range(100):
        cache.check_and_add(f"{i:032x}", 1000, 1000)
    cache.check_and_add(f"{1000:032x}", 1001, 1001)  # fresh: accepted
    with pytest.raises(protocol.ProtocolError):
        cache.check_and_add(f"{0:032x}", 1000, 1001)  # evicted but still refused
    for i in range(2000):  # never grows past its limit
        cache.check_and_add(f"{5000 + i:032x}", 1002 + i, 1002 + i)
    assert len(cache) <= 100


def test_l3_cache_evicts_by_age():
    cache = protocol.ReplayCache()
    cache.check_and_add(f"{1:032x}", 1000, 1000)
    cache.check_and_add(f"{2:032x}", 2000, 2000)
    assert len(cache) == 1


# -- M2 / L4: the master records only the peer's own address ----------------------------

@pytest.mark.parametrize("peer", ["169.254.169.254", "0.0.0.0", "255.255.255.255",
                                  "127.0.0.5", "224.0.0.1"])
def test_l4_unusable_peer_addresses_are_refused(agent_ctx, peer):
    ctx = agent_ctx()
    m = _master(ctx)
    code, text = m.handle_join(_join_body(ctx.now(), addresses=(peer,)), peer)
    assert code == 403, text
    assert m.nodes == {}


def test_m2_only_the_peer_address_is_recorded(agent_ctx):
    ctx = agent_ctx()
    m = _master(ctx)
    body = _join_body(ctx.now(), addresses=("10.0.0.11", "10.0.0.1", "10.0.0.12",
                                            "169.254.169.254"))
    code, text = m.handle_join(body, "10.0.0.11")
    assert code == 200, text
    assert m.nodes["node01"]["address"] == "10.0.0.11"
    assert m.nodes["node01"]["addresses"] == ["10.0.0.11"]
    reply = m.summary()["nodes"][0]
    assert reply["addresses"] == ["10.0.0.11"]


def test_l4_a_token_holder_cannot_take_another_nodes_address(agent_ctx):
    ctx = agent_ctx()
    m = _master(ctx)
    assert m.handle_join(_join_body(ctx.now()), "10.0.0.11")[0] == 200
    evil = _join_body(ctx.now(), hostname="evil", addresses=("10.0.0.11",), key=5)
    code, _ = m.handle_join(evil, "10.0.0.66")
    assert code == 403
    assert sorted(m.nodes) == ["node01"] and m.nodes["node01"]["address"] == "10.0.0.11"


# -- M1: the master learns its own address ------------------------------------------

def _own_address():
    """This host's address toward the world (the route trick), or skip."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect(("192.0.2.1", 9))
        address = sock.getsockname()[0]
    except OSError:
        pytest.skip("no route out here")
    finally:
        sock.close()
    if address.startswith("127."):
        pytest.skip("no non-loopback address here")
    return address


class MetadataServer:
    def __init__(self, answers):
        outer = self
        self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body=b""):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):  # noqa: N802
                outer.requests.append(("PUT", self.path))
                self._send(200, b"TOKEN")

            def do_GET(self):  # noqa: N802
                outer.requests.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") != "TOKEN":
                    return self._send(401)
                if self.path in answers:
                    return self._send(200, answers[self.path])
                self._send(404)

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        thread.daemon = True
        thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _aws_master_spec():
    """The AWS launcher's master spec: master.address is null."""
    return spec.make_spec("demo", "master", master_address=None, hostname="master",
                          token=TOKEN, cookie=COOKIE, expected_nodes=1, join_port=free_port())


def test_m1_master_from_cloud_init_takes_imds_local_ipv4(agent_ctx):
    address = "10.1.2.3"
    imds = MetadataServer({"/latest/meta-data/local-ipv4": address.encode()})
    try:
        ctx = agent_ctx(imds_url=imds.url)
        path = ctx.path(source.CLOUD_INIT)
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as handle:
            handle.write(spec.dumps(_aws_master_spec()))
        agent = Agent(ctx, bind_address="127.0.0.1")
        agent.state.run_phase("spec", agent.phase_spec)
        agent.state.run_phase("keys", agent.phase_keys)
        agent.state.run_phase("serve", agent.phase_serve)
        try:
            assert agent.master.addresses == [address]
        finally:
            agent.stop()
    finally:
        imds.close()


def test_m1_master_without_imds_uses_its_route_address_never_loopback(agent_ctx):
    own = _own_address()
    ctx = agent_ctx()
    write_spec(ctx, _aws_master_spec())
    agent = Agent(ctx, bind_address="127.0.0.1")
    agent.state.run_phase("spec", agent.phase_spec)
    agent.state.run_phase("keys", agent.phase_keys)
    agent.state.run_phase("serve", agent.phase_serve)
    try:
        assert agent.master.addresses == [own]
    finally:
        agent.stop()


@pytest.mark.parametrize("claimed", ["127.0.0.1", "192.0.2.77"])
def test_m1_spec_master_address_must_be_one_of_ours(claimed):
    from imagebake.agent.addresses import master_own_addresses
    with pytest.raises(Exception, match="not one of this machine's addresses|loopback"):
        master_own_addresses(dict(_aws_master_spec(),
                                  master={"address": claimed, "name": "master",
                                          "join_port": 8990}), ctx=None)


def test_m1_spec_master_address_of_ours_is_taken():
    from imagebake.agent.addresses import master_own_addresses
    own = _own_address()
    the_spec = _aws_master_spec()
    the_spec["master"]["address"] = own
    assert master_own_addresses(the_spec, ctx=None) == [own]


def test_m1_node_refuses_a_welcome_announcing_loopback(agent_ctx):
    nonce = protocol.new_nonce()
    welcome = protocol.make_welcome("demo", 1000, nonce, "master", ["127.0.0.1"],
                                    fake_key(1), fake_key(2), [["master", "127.0.0.1"]])
    with pytest.raises(protocol.ProtocolError):
        protocol.check_welcome_fields(welcome, nonce)
    assert protocol.check_welcome_fields(welcome, nonce, allow_loopback=True)


# -- M3: slow connections -----------------------------------------------------------

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


def test_m3_whole_request_deadline(agent_ctx):
    ctx = agent_ctx()
    m = _master(ctx, ["127.0.0.1"])
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


def test_m3_joins_complete_under_a_slow_connection_flood(agent_ctx):
    ctx = agent_ctx(clock=time.time)
    ctx.allow_loopback = True
    m = _master(ctx, ["127.0.0.1"])
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


def test_m3_service_unit_raises_the_open_file_limit():
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "provision",
                             "50-agent.sh")).read()
    assert re.search(r"^LimitNOFILE=\d{5,}$", text, re.M)
    assert re.search(r"^limit nofile \d{5,} \d{5,}$", text, re.M)


# -- H2: the metadata fence, spec copies -------------------------------------------------

def test_h2_fence_at_every_boot_whatever_the_source(agent_ctx):
    ctx = agent_ctx()
    ctx.runner.results["iptables"] = __import__(
        "imagebake.agent.runner", fromlist=["Result"]).Result(1, "")
    write_spec(ctx, spec.make_spec("demo", "node", master_address="10.0.0.5", token=TOKEN,
                                   cookie=COOKIE))
    agent = Agent(ctx)
    agent.state.run_phase("spec", agent.phase_spec)
    fence = [c for c in ctx.runner.calls if c[0] == "iptables"]
    assert fence and fence[0][:2] == ["iptables", "-C"] and "169.254.169.254" in fence[0]
    assert ["iptables", "-A"] + fence[0][2:] in ctx.runner.calls


def test_h2_spec_from_a_run_file_is_not_copied_to_disk(agent_ctx):
    ctx = agent_ctx()
    write_spec(ctx, spec.make_spec("demo", "node", master_address="10.0.0.5", token=TOKEN,
                                   cookie=COOKIE))
    agent = Agent(ctx)
    agent.state.run_phase("spec", agent.phase_spec)
    assert not os.path.lexists(ctx.path(source.PERSISTED))
    for base, _dirs, files in os.walk(ctx.path("/var")):
        for name in files:
            with open(os.path.join(base, name)) as handle:
                assert TOKEN not in handle.read()


def test_h2_cloud_init_copies_are_root_only(agent_ctx):
    ctx = agent_ctx()
    the_spec = spec.make_spec("demo", "node", master_address="10.0.0.5", token=TOKEN,
                              cookie=COOKIE)
    inst = ctx.path("/var/lib/cloud/instances/i-0123")
    os.makedirs(inst)
    os.symlink(inst, ctx.path("/var/lib/cloud/instance"))
    for name in ("user-data.txt", "user-data.txt.i", "obj.pkl"):
        with open(os.path.join(inst, name), "w") as handle:
            handle.write(spec.dumps(the_spec))
        os.chmod(os.path.join(inst, name), 0o644)
    agent = Agent(ctx)
    agent.state.run_phase("spec", agent.phase_spec)
    for name in ("user-data.txt", "user-data.txt.i", "obj.pkl"):
        assert stat.S_IMODE(os.stat(os.path.join(inst, name)).st_mode) == 0o600, name
    persisted = ctx.path(source.PERSISTED)
    assert stat.S_IMODE(os.stat(persisted).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(persisted)).st_mode) == 0o700


def test_h2_fence_service_runs_before_the_network(tmp_path):
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "provision",
                             "50-agent.sh")).read()
    assert "imagebake-fence" in text and "Before=network-pre.target" in text
    assert "--uid-owner 0" in text and "169.254.169.254" in text


# -- authorized_keys options ----------------------------------------------------------

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


# -- untested checks: the welcome's signature, /v1/status replay ------------------------

class FakeMaster:
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
    fake = FakeMaster(seal)
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


@needs_keygen
def test_status_replay_is_refused(agent_ctx):
    c = Cluster(agent_ctx, expected=1)
    try:
        c.start_master()
        url = f"http://127.0.0.1:{c.port}/v1/status"
        body = protocol.seal(TOKEN, protocol.make_status_request("demo", c.mctx.now()))
        urlopen(Request(url, data=body, method="POST"), timeout=5).read()
        with pytest.raises(HTTPError) as info:
            urlopen(Request(url, data=body, method="POST"), timeout=5)
        assert info.value.code == 403 and b"replayed" in info.value.read()
    finally:
        c.master.stop()


# -- TTL ---------------------------------------------------------------------------

def test_ttl_is_armed_independently_of_the_agent(agent_ctx):
    from imagebake.agent import ttl
    clock = Clock(10000)
    ctx = agent_ctx(clock=clock)
    os.makedirs(ctx.path("/run/systemd/system"))
    the_spec = spec.make_spec("demo", "master", ttl_deadline=10000 + 3600 + 1)
    assert ttl.arm(ctx, the_spec) == "shutdown -P +61"
    assert ["shutdown", "-P", "+61"] in ctx.runner.calls
    assert ttl.arm(ctx, spec.make_spec("demo", "master")) is None


def test_ttl_units_in_the_provisioning():
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "provision",
                             "50-agent.sh")).read()
    assert "imagebake-ttl" in text
    assert re.search(r"ExecStart=\S+ ttl", text)
    # the agent's unit stopping or failing must not take the TTL with it
    ttl_unit = text.split("imagebake-ttl.service")[1][:800]
    assert "PartOf" not in ttl_unit and "BindsTo" not in ttl_unit


def test_h2_no_cloud_init_is_quiet(agent_ctx):
    import logging
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    C.LOG.addHandler(handler)
    try:
        ctx = agent_ctx()
        assert source.lock_cloud_init(ctx) == []
    finally:
        C.LOG.removeHandler(handler)
    assert not [m for m in seen if "cannot lock down" in m]
