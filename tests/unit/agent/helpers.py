"""What the agent tests share: a fake runner and clock, file snapshots, and a master
with node agents in temporary roots on 127.0.0.0/8."""


import base64
import contextlib
import logging
import os
import shutil
import socket
import stat

import pytest

from imagebake.agent.context import Context
from imagebake.agent.loop import Agent
from imagebake.agent.runner import Result, Runner
from imagebake.agent.spec import dumps, make_spec

HAVE_SSH_KEYGEN = shutil.which("ssh-keygen") is not None
needs_keygen = pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="ssh-keygen is not installed")
ROOT = os.geteuid() == 0
NOBODY = 65534
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (real chown to uid 65534)")


class FakeRunner(Runner):
    """Records every command; runs only ssh-keygen for real; everything else succeeds."""

    def __init__(self, results=None, real=("ssh-keygen",)):
        Runner.__init__(self, timeout=30)
        self.calls = []
        self.results = dict(results or {})  # argv[0] -> Result
        self.real = set(real)
        self.missing = set()
        self.killed = []

    def which(self, name):
        if name in self.missing:
            return None
        if name in self.real:
            return Runner.which(self, name)
        return "/fake/bin/" + name

    def run(self, argv, input_text=None, env=None):
        self.calls.append(list(argv))
        if argv[0] in self.missing:
            return Result(127, f"{argv[0]}: not found")
        if argv[0] in self.real:
            return Runner.run(self, argv, input_text, env)
        return self.results.get(argv[0], Result(0, ""))

    def spawn(self, argv):
        self.calls.append(list(argv))
        return Result(0, "")

    def kill(self, pid, sig):
        self.killed.append((pid, sig))

    def commands(self):
        return [" ".join(c) for c in self.calls]


class Clock:
    def __init__(self, now=1700000000):
        self.now = now

    def __call__(self):
        return self.now


@contextlib.contextmanager
def agent_log():
    """The agent's log lines (its logger does not propagate once set up) as a list."""
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("imagebake_agent")
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def contexts(tmp_path):
    """make(name, hostname, **kwargs): a Context rooted in tmp_path/name, with a fake
    runner and a settable clock (the agent_ctx fixture)."""
    def make(name="root", hostname="host", **kwargs):
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        kwargs.setdefault("runner", FakeRunner())
        kwargs.setdefault("clock", Clock())
        kwargs.setdefault("imds_url", None)
        kwargs.setdefault("sleep", lambda s: None)
        return Context(root=str(root), hostname=hostname, **kwargs)
    return make


def snapshot(root):
    """{relative path: bytes} of every file under root (for 'nothing written' checks)."""
    out = {}
    for base, _dirs, files in os.walk(str(root)):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, str(root))] = handle.read()
    return out


TOKEN = "ab" * 32
LAUNCHER_KEY = "cd" * 32  # the launcher's own key: in the master's spec only
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
                                     hostname="master", launcher_key=LAUNCHER_KEY, **common)
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


def read(ctx, path):
    with open(ctx.path(path)) as handle:
        return handle.read()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def with_disco(c, port):
    """The master's spec with Disco's API on PORT and a `disco` executable installed."""
    spec_ = dict(c.master_spec, disco_port=port)
    os.remove(c.mctx.path("/run/imagebake/spec.json"))
    os.rmdir(c.mctx.path("/run/imagebake"))
    write_spec(c.mctx, spec_)
    exe = c.mctx.path("/usr/bin/disco")
    os.makedirs(os.path.dirname(exe))
    with open(exe, "w") as handle:
        handle.write("#!/bin/sh\n")
    os.chmod(exe, 0o755)
    c.node_spec = dict(c.node_spec, disco_port=port)
