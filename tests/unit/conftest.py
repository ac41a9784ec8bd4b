"""Shared fixtures for the agent tests (tests/unit/test_agent_*.py)."""

import os
import shutil

import pytest

from imagebake.agent.context import Context
from imagebake.agent.runner import Result, Runner

HAVE_SSH_KEYGEN = shutil.which("ssh-keygen") is not None


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


@pytest.fixture
def agent_ctx(tmp_path):
    """A Context rooted in a temp dir, with a fake runner and a settable clock."""
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
