"""Spec sources (files, cloud-init, IMDS v2/v1 against a fake server), TTL, services, CLI."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from conftest import HAVE_SSH_KEYGEN, Clock

from imagebake.agent import imds, services, source, ttl
from imagebake.agent.loop import Agent
from imagebake.agent.runner import Result
from imagebake.agent.spec import SpecError, dumps, make_spec

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = make_spec("demo", "node", master_address="10.0.0.5", hostname="node01")


# -- a fake metadata service on 127.0.0.1 --------------------------------------------

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
    server = fake_imds(mode="v2", user_data=dumps(SPEC).encode())
    data, version = imds.get_user_data(server.url, timeout=2)
    assert version == "v2" and json.loads(data.decode()) == SPEC
    put, get = server.requests
    assert put[0] == "PUT" and put[2]["x-aws-ec2-metadata-token-ttl-seconds"] == "21600"
    assert get[0] == "GET" and get[2]["x-aws-ec2-metadata-token"] == "TOKEN123"


def test_imds_v1_fallback_when_token_endpoint_is_missing(fake_imds):
    server = fake_imds(mode="v1", user_data=b"hello")
    assert imds.get_user_data(server.url, timeout=2) == (b"hello", "v1")
    assert "x-aws-ec2-metadata-token" not in server.requests[-1][2]


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
    server = fake_imds(mode="v1", user_data=dumps(SPEC).encode())
    ctx = agent_ctx(imds_url=server.url)
    ctx.runner.results["iptables"] = Result(1, "")  # -C: rule absent
    spec, origin, notes = source.find_spec(ctx)
    assert spec == SPEC and origin == "imds-v1"
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


def write(ctx, path, text, mode=0o644):
    full = ctx.path(path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as handle:
        handle.write(text)
    os.chmod(full, mode)
    return full


def test_source_order_and_persistence(agent_ctx):
    ctx = agent_ctx()
    with pytest.raises(SpecError, match="no cluster spec"):
        source.find_spec(ctx)
    cloud = write(ctx, source.CLOUD_INIT, dumps(SPEC))
    spec, origin, _ = source.find_spec(ctx)
    assert origin == source.CLOUD_INIT
    source.persist_spec(ctx, spec)
    assert os.stat(cloud).st_mode & 0o777 == 0o600
    assert os.stat(ctx.path(source.PERSISTED)).st_mode & 0o777 == 0o600
    other = make_spec("other", "master")
    write(ctx, source.DEFAULT_SPEC, dumps(other))
    assert source.find_spec(ctx)[0] == other  # /run/imagebake/spec.json first
    write(ctx, "/tmp/x.json", dumps(SPEC))
    assert source.find_spec(ctx, "/tmp/x.json")[0] == SPEC
    with pytest.raises(SpecError, match="does not exist"):
        source.find_spec(ctx, "/nope.json")
    write(ctx, "/tmp/bad.json", "{")
    with pytest.raises(SpecError):
        source.find_spec(ctx, "/tmp/bad.json")


def test_cloud_init_user_data_that_is_not_ours_is_skipped(agent_ctx):
    ctx = agent_ctx()
    write(ctx, source.CLOUD_INIT, "#cloud-config\npackages: [vim]\n")
    with pytest.raises(SpecError, match="not JSON"):
        source.find_spec(ctx)


# -- TTL -------------------------------------------------------------------------------

def test_ttl_action_is_pluggable(agent_ctx):
    calls = []
    clock = Clock(1000)
    ctx = agent_ctx(clock=clock, power_off=lambda c: calls.append(c.now()))
    spec = make_spec("c", "master", ttl_deadline=1500)
    assert not ttl.enforce(ctx, spec)
    clock.now = 1500
    assert ttl.enforce(ctx, spec) and calls == [1500]
    assert not ttl.enforce(ctx, make_spec("c", "master"))  # no deadline


def test_default_power_off(agent_ctx):
    ctx = agent_ctx()
    with pytest.raises(SystemExit):  # no init system in the root: the agent just exits
        ttl.default_power_off(ctx)
    os.makedirs(ctx.path("/run/systemd/system"))
    assert ttl.default_power_off(ctx) == "shutdown -h now"
    assert ["shutdown", "-h", "now"] in ctx.runner.calls


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


def test_expired_spec_powers_off_before_any_work(agent_ctx):
    calls = []
    ctx = agent_ctx(clock=Clock(5000), power_off=lambda c: calls.append("off"))
    write(ctx, source.DEFAULT_SPEC, dumps(make_spec("c", "master", ttl_deadline=4000)))
    assert Agent(ctx).setup() is False
    assert calls == ["off"]
    assert not os.path.exists(ctx.path("/etc/ssh"))


# -- services ----------------------------------------------------------------------------

def test_init_detection_and_commands(agent_ctx):
    ctx = agent_ctx()
    assert services.init_system(ctx) == "none"
    ok, how = services.restart(ctx, "sshd")
    assert ok and how == "sshd" and os.path.isdir(ctx.path("/run/sshd"))
    write(ctx, "/run/dnsmasq/dnsmasq.pid", f"{os.getpid()}\n")
    ok, how = services.restart(ctx, "dnsmasq", reload_only=True)
    assert how == f"kill -HUP {os.getpid()}" and ctx.runner.killed
    write(ctx, "/sbin/initctl", "")
    ctx.runner.results["/sbin/initctl"] = Result(0, "initctl (upstart 1.12.1)")
    assert services.init_system(ctx) == "upstart"
    assert services.restart(ctx, "sshd") == (True, "service ssh restart")
    os.makedirs(ctx.path("/run/systemd/system"))
    assert services.restart(ctx, "sshd") == (True, "systemctl restart ssh")
    ctx.runner.missing.add("systemctl")
    assert services.restart(ctx, "dnsmasq")[0] is False


# -- CLI, standalone package ----------------------------------------------------------------

def run_cli(args, cwd=REPO, module="imagebake.agent", env_path=REPO):
    env = dict(os.environ, PYTHONPATH=env_path)
    proc = subprocess.Popen([sys.executable, "-m", module] + args, cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out.decode(), err.decode()


def test_status_without_state_is_not_ready(tmp_path):
    rc, out, _ = run_cli(["status", "--json", "--root", str(tmp_path)])
    assert rc == 1 and json.loads(out)["ready"] is False


def test_bad_spec_exits_2_with_one_line(tmp_path):
    (tmp_path / "s.json").write_text('{"version": 1}')
    rc, _, err = run_cli(["run", "--once", "--no-imds", "--root", str(tmp_path),
                          "--spec", "/s.json"])
    assert rc == 2 and "phase spec: failed" in err


@pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="ssh-keygen is not installed")
def test_standalone_package_runs_a_master_once(tmp_path):
    """Copied to /opt/imagebake/imagebake_agent, it runs as `python3 -m imagebake_agent`."""
    opt = tmp_path / "opt"
    shutil.copytree(os.path.join(REPO, "imagebake", "agent"), str(opt / "imagebake_agent"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    root = tmp_path / "root"
    spec = make_spec("demo", "master", master_address="127.0.0.1", hostname="master",
                     join_port=_free_port(), expected_nodes=0)
    (tmp_path / "root").mkdir()
    (root / "spec.json").write_text(dumps(spec))
    # no sshd/dnsmasq here: put harmless stand-ins first on PATH
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    for name in ("sshd", "dnsmasq", "hostname"):
        (fakebin / name).write_text("#!/bin/sh\nexit 0\n")
        os.chmod(str(fakebin / name), 0o755)
    env = dict(os.environ, PYTHONPATH=str(opt),
               PATH=str(fakebin) + ":" + os.environ.get("PATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagebake_agent", "run", "--once", "--no-imds",
         "--root", str(root), "--spec", "/spec.json", "--bind", "127.0.0.1",
         "--address", "127.0.0.1", "--hostname", "master", "--allow-loopback"],
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    for phase in ("spec", "keys", "services", "serve", "trust", "dns", "disco"):
        assert f"phase {phase}: ok" in err.decode()
    proc = subprocess.Popen([sys.executable, "-m", "imagebake_agent", "status", "--json",
                             "--root", str(root)], env=env, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=60)
    report = json.loads(out.decode())
    assert proc.returncode == 0 and report["ready"] is True
    assert report["disco"] == "absent: config written, not started"


def _free_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port
