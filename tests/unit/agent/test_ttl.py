"""ttl.py: the power-off at the deadline is pluggable, armed independently of the agent,
and a moved deadline re-arms and is re-read."""

import os

import pytest

from imagebake.agent import spec, ttl
from imagebake.agent.spec import make_spec

from .helpers import Clock


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


def test_ttl_is_armed_independently_of_the_agent(agent_ctx):
    from imagebake.agent import ttl
    clock = Clock(10000)
    ctx = agent_ctx(clock=clock)
    os.makedirs(ctx.path("/run/systemd/system"))
    the_spec = spec.make_spec("demo", "master", ttl_deadline=10000 + 3600 + 1)
    assert ttl.arm(ctx, the_spec) == "shutdown -P +61"
    assert ["shutdown", "-P", "+61"] in ctx.runner.calls
    assert ttl.arm(ctx, spec.make_spec("demo", "master")) is None
