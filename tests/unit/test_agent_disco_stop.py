"""The master agent stops Disco when it stops (SIGTERM from docker stop/restart or systemd):
`disco stop` only when it started or found Disco running, once."""

from __future__ import annotations

import os

from test_agent_cluster import fake_key

from imagebake.agent.loop import Agent
from imagebake.agent.master import Master
from imagebake.agent.spec import make_spec


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
