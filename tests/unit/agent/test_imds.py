"""imds.py: IMDSv2 with a v1 fallback (a fake service and the qemu target's emulator), the
root-only metadata fence, and one-line faults when the service is down or its user data
is not a spec."""

import json
import logging
import os
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from imagebake.agent import imds, source
from imagebake.agent.loop import Agent
from imagebake.agent.runner import Result
from imagebake.agent.spec import dumps, make_spec
from imagebake.targets.qemu import imds as emulator

from .helpers import free_port, snapshot

NODE01_SPEC = make_spec("demo", "node", master_address="10.0.0.5", hostname="node01")


def _lower(headers):
    return dict((k.lower(), v) for k, v in headers.items())


class FakeIMDS:
    def __init__(self, mode="v2", user_data=None):
        self.mode = mode  # v2 | v1 (token endpoint 404/405) | v2-only (GET needs token)
        self.user_data = user_data
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body=b""):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):  # noqa: N802
                outer.requests.append(("PUT", self.path, _lower(self.headers)))
                if self.path != imds.TOKEN_PATH:
                    return self._send(404)
                if outer.mode == "v1":
                    return self._send(405)
                if "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
                    return self._send(400)
                self._send(200, b"TOKEN123")

            def do_GET(self):  # noqa: N802
                outer.requests.append(("GET", self.path, _lower(self.headers)))
                if outer.mode == "v2" and self.headers.get(
                        "X-aws-ec2-metadata-token") != "TOKEN123":
                    return self._send(401)
                if self.path != imds.USER_DATA_PATH or outer.user_data is None:
                    return self._send(404)
                self._send(200, outer.user_data)

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        thread.daemon = True
        thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_imds():
    servers = []

    def make(**kw):
        server = FakeIMDS(**kw)
        servers.append(server)
        return server
    yield make
    for server in servers:
        server.close()


def test_imds_v2_token_dance(fake_imds):
    server = fake_imds(mode="v2", user_data=dumps(NODE01_SPEC).encode())
    data, version = imds.get_user_data(server.url, timeout=2)
    assert version == "v2" and json.loads(data.decode()) == NODE01_SPEC
    put, get = server.requests
    assert put[0] == "PUT" and put[2]["x-aws-ec2-metadata-token-ttl-seconds"] == "21600"
    assert get[0] == "GET" and get[2]["x-aws-ec2-metadata-token"] == "TOKEN123"


def test_imds_v1_fallback_when_token_endpoint_is_missing(fake_imds):
    server = fake_imds(mode="v1", user_data=b"hello")
    assert imds.get_user_data(server.url, timeout=2) == (b"hello", "v1")
    assert "x-aws-ec2-metadata-token" not in server.requests[-1][2]


def test_imds_answers_are_read_only_up_to_a_cap(fake_imds):
    """The agent (root) reads at most MAX_ANSWER bytes of a metadata answer (issue 21 N3)."""
    server = fake_imds(mode="v2", user_data=b"x" * imds.MAX_ANSWER)
    assert len(imds.get_user_data(server.url, timeout=2)[0]) == imds.MAX_ANSWER
    server = fake_imds(mode="v2", user_data=b"x" * (imds.MAX_ANSWER + 1))
    with pytest.raises(imds.NoIMDS, match="over"):
        imds.get_user_data(server.url, timeout=2)


def test_imds_user_data_404(fake_imds):
    server = fake_imds(mode="v2", user_data=None)
    assert imds.get_user_data(server.url, timeout=2) == (None, "v2")


def test_imds_connection_refused_is_v1_then_no_imds():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens: refused for the token and for the GET
    assert imds.get_token(f"http://127.0.0.1:{port}", 1) is None
    with pytest.raises(imds.NoIMDS):
        imds.get_user_data(f"http://127.0.0.1:{port}", timeout=1)


def test_spec_from_imds_v1_installs_the_root_only_reject_rule(agent_ctx, fake_imds):
    """The exact rule: non-root traffic to the metadata address is rejected. That it stops a
    real user is proven on booted VMs: tests/vm/test_vm_cluster.py
    test_disco_cannot_read_the_user_data_through_imds_or_cloud_init."""
    server = fake_imds(mode="v1", user_data=dumps(NODE01_SPEC).encode())
    ctx = agent_ctx(imds_url=server.url)
    ctx.runner.results["iptables"] = Result(1, "")  # -C: rule absent
    spec, origin, notes = source.find_spec(ctx)
    assert spec == NODE01_SPEC and origin == "imds-v1"
    assert notes == {"imds": "v1", "imds_fence": "failed: "}
    assert ctx.runner.calls[0][:2] == ["iptables", "-C"]
    assert ctx.runner.calls[1][:2] == ["iptables", "-A"]
    assert ctx.runner.calls[1][2:] == ["OUTPUT", "-d", "169.254.169.254", "-m", "owner", "!",
                                       "--uid-owner", "0", "-j", "REJECT"]


def test_fence_is_idempotent_and_skipped_without_iptables(agent_ctx):
    ctx = agent_ctx()
    assert imds.fence_metadata(ctx) == "present"  # -C succeeds
    assert len(ctx.runner.calls) == 1
    ctx.runner.missing.add("iptables")
    assert imds.fence_metadata(ctx) == "skipped: iptables absent"


NODE_SPEC = make_spec("demo", "node", master_address="10.0.0.5")


def _get(url, path, token=None):
    headers = {emulator.TOKEN_HEADER: token} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers),
                                    timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _token(url, ttl="60"):
    req = urllib.request.Request(url + "/latest/api/token", data=b"", method="PUT",
                                 headers={emulator.TTL_HEADER: ttl} if ttl else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


SPEC_TEXT = dumps(NODE_SPEC)


def _instance(user_data, http_tokens="required", address="127.0.0.1"):
    return {"instance-id": "i-0123456789abcdef0", "local-ipv4": address,
            "local-hostname": "ip-127-0-0-1.ec2.internal", "mac": "52:54:00:00:00:01",
            "availability-zone": "us-east-1a", "region": "us-east-1",
            "http_tokens": http_tokens, "user-data": user_data,
            "public-keys": [["imagebake-demo", "ssh-ed25519 AAAAC3Nza test"]]}


@pytest.fixture
def emulated():
    servers = []

    def start(user_data=SPEC_TEXT, http_tokens="required"):
        server, url = emulator.serve({"instances": {"127.0.0.1": _instance(user_data,
                                                                           http_tokens)}})
        servers.append(server)
        return url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_agent_emulated_imds_required_refuses_v1_and_accepts_a_token(emulated):
    url = emulated(http_tokens="required")
    assert _get(url, "/latest/user-data")[0] == 401
    assert _token(url, ttl=None)[0] == 400  # the TTL header is mandatory
    assert _token(url, ttl="0")[0] == 400 and _token(url, ttl="21601")[0] == 400
    code, token = _token(url)
    assert code == 200 and token
    assert _get(url, "/latest/user-data", token) == (200, dumps(NODE_SPEC))
    assert _get(url, "/latest/user-data", "forged")[0] == 401
    assert _get(url, "/2021-03-23/meta-data/local-ipv4", token) == (200, "127.0.0.1")
    assert _get(url, "/latest/meta-data/placement/availability-zone", token) == (
        200, "us-east-1a")
    assert _get(url, "/latest/meta-data/public-keys/", token) == (200, "0=imagebake-demo")
    assert _get(url, "/latest/meta-data/public-keys/0/openssh-key", token)[1].startswith(
        "ssh-ed25519 ")
    assert _get(url, "/latest/meta-data/public-ipv4", token)[0] == 404  # none given
    assert "instance-id" in _get(url, "/latest/meta-data/", token)[1].splitlines()
    # the agent's own client does the IMDSv2 dance
    assert imds.get_user_data(url) == (dumps(NODE_SPEC).encode(), "v2")
    assert imds.get_metadata(url, imds.LOCAL_IPV4_PATH) == "127.0.0.1"


def test_agent_emulated_imds_optional_allows_v1(emulated):
    url = emulated(http_tokens="optional")
    assert _get(url, "/latest/meta-data/instance-id") == (200, "i-0123456789abcdef0")
    assert _get(url, "/latest/meta-data/instance-id", "forged")[0] == 401


def test_agent_emulated_imds_answers_only_known_instances():
    server, url = emulator.serve({"instances": {"10.77.0.2": _instance("x", "optional",
                                                                       "10.77.0.2")}})
    try:
        assert _get(url, "/latest/meta-data/instance-id")[0] == 403
        assert _token(url)[0] == 403
    finally:
        server.shutdown()
        server.server_close()


def test_agent_dhcp_offer_gives_the_fixed_address_and_the_metadata_route_only():
    mac = bytes.fromhex("525400000001")
    packet = bytearray(240)
    packet[0:4] = bytes([1, 1, 6, 0])
    packet[4:8] = b"\x01\x02\x03\x04"
    packet[28:34] = mac
    packet[236:240] = emulator.DHCP_MAGIC
    packet += bytes([53, 1, 1, 255])
    reply, kind, _mac, address = emulator.dhcp_reply(
        bytes(packet), {"52:54:00:00:00:01": "10.77.0.11"}, "10.77.0.1", 24)
    opts = emulator._options(reply[240:])
    assert kind == emulator.OFFER and address == "10.77.0.11"
    assert socket.inet_ntoa(reply[16:20]) == "10.77.0.11"
    assert opts[121] == bytes([32, 169, 254, 169, 254, 0, 0, 0, 0])  # on-link /32
    assert 3 not in opts and 6 not in opts  # no router, no DNS server: no route out
    assert emulator.dhcp_reply(bytes(packet), {}, "10.77.0.1", 24) is None  # unknown MAC


def _lines(log):
    return [r for r in log.records if r.levelno >= logging.WARNING]


class _Records(logging.Handler):
    def __init__(self):
        logging.Handler.__init__(self, logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def agent_log():
    """Every record the agent's logger emits, once each."""
    logger = logging.getLogger("imagebake_agent")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_agent_metadata_service_down_retries_with_backoff_then_one_line_exit_2(
        agent_ctx, agent_log):
    slept = []
    ctx = agent_ctx(imds_url=f"http://127.0.0.1:{free_port()}", sleep=slept.append)
    before = snapshot(ctx.root)
    agent = Agent(ctx)
    with pytest.raises(SystemExit) as exc:
        agent.setup()
    assert exc.value.code == 2
    assert slept == list(source.IMDS_RETRY_DELAYS)  # backoff, ~1 min in all
    lines = _lines(agent_log)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "no cluster spec found" in lines[0].getMessage()
    assert f"after {len(source.IMDS_RETRY_DELAYS) + 1} attempts" in lines[0].getMessage()
    written = set(snapshot(ctx.root)) - set(before)
    # nothing but the agent's fence note: no spec copy, no key, no phase recorded
    assert written <= {"var/lib/imagebake/state.json"}, written
    assert not os.path.exists(ctx.path(source.PERSISTED))
    assert "phases" not in open(ctx.path("/var/lib/imagebake/state.json")).read() or \
        '"phases": {}' in open(ctx.path("/var/lib/imagebake/state.json")).read()
    assert not [p for p in written if p.endswith((".tmp", ".new")) or ".tmp." in p]


def test_agent_metadata_service_back_during_backoff_is_used(agent_ctx, emulated):
    url = emulated()
    port = int(url.rsplit(":", 1)[1])
    calls = []

    def sleep(seconds):
        calls.append(seconds)

    ctx = agent_ctx(imds_url=f"http://127.0.0.1:{free_port()}", sleep=sleep)
    real = imds.get_user_data

    def flaky(base, timeout=2.0):
        if len(calls) < 2:
            return real(base, timeout)  # closed port: NoIMDS
        return real(f"http://127.0.0.1:{port}", timeout)

    imds_get, imds.get_user_data = imds.get_user_data, flaky
    try:
        spec, origin, _ = source.find_spec(ctx)
    finally:
        imds.get_user_data = imds_get
    assert spec == NODE_SPEC and origin == "imds-v2" and calls == [1, 2]


@pytest.mark.parametrize("user_data", ["#cloud-config\npackages: [vim]\n", "{not json",
                                       '{"version": 1}', "\u00e9t\u00e9"])
def test_agent_user_data_not_a_spec_one_line_no_cluster_state(agent_ctx, agent_log,
                                                              emulated, user_data):
    slept = []
    ctx = agent_ctx(imds_url=emulated(user_data=user_data), sleep=slept.append)
    before = snapshot(ctx.root)
    with pytest.raises(SystemExit) as exc:
        Agent(ctx).setup()
    assert exc.value.code == 2 and slept == []  # an answer: no retry
    lines = _lines(agent_log)
    assert len(lines) == 1 and "imds user data" in lines[0].getMessage()
    written = set(snapshot(ctx.root)) - set(before)
    assert written <= {"var/lib/imagebake/state.json"}, written
    assert not os.path.exists(ctx.path(source.PERSISTED))


def test_agent_no_user_data_at_all_one_line(agent_ctx, agent_log, emulated):
    ctx = agent_ctx(imds_url=emulated(user_data=None))
    with pytest.raises(SystemExit):
        Agent(ctx).setup()
    lines = _lines(agent_log)
    assert len(lines) == 1 and "imds: no user data" in lines[0].getMessage()
