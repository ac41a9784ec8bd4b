"""Time to live: every machine powers itself off once ttl_deadline has passed.

The power-off does not depend on the agent staying up: at boot a separate unit
runs `imagebake-agent ttl` (provision/50-agent.sh). Under systemd that hands
the deadline to `shutdown -P +MINUTES` (logind keeps the schedule; stopping or
crashing the agent does not cancel it); under upstart its own job waits
(`ttl --wait`, respawned without limit) and powers off. The agent also checks
the deadline itself between phases and in its loop (belt and braces, and the
only mechanism in a container, where there is no init to power off).
"""

from .services import init_system


def expired(spec, now):
    deadline = spec.get("ttl_deadline")
    return deadline is not None and now >= deadline


def default_power_off(ctx):
    """shutdown -h now (or poweroff); without an init system just end the agent."""
    if init_system(ctx) == "none":
        ctx.log.warning("ttl passed: no init system (container), exiting the agent")
        raise SystemExit(0)
    for argv in (["shutdown", "-h", "now"], ["poweroff"]):
        result = ctx.runner.run(argv)
        if result.ok:
            return " ".join(argv)
    ctx.log.error("ttl passed but power off failed")
    raise SystemExit(3)


def enforce(ctx, spec):
    """Call the power-off action when the deadline has passed; True if it did."""
    if not expired(spec, ctx.now()):
        return False
    ctx.log.warning("ttl_deadline %s passed: powering off", spec["ttl_deadline"])
    action = ctx.power_off if ctx.power_off is not None else default_power_off
    action(ctx)
    return True


def minutes_left(spec, now):
    """Whole minutes until the deadline, rounded up (0 when it has passed)."""
    left = spec["ttl_deadline"] - now
    return 0 if left <= 0 else (left + 59) // 60


def arm(ctx, spec):
    """Schedule the power-off with the init system; return what was run, or None.

    Only under systemd (`shutdown -P +N` returns at once and logind keeps the
    schedule). Elsewhere return None: the caller waits (wait_and_power_off).
    """
    if spec.get("ttl_deadline") is None or init_system(ctx) != "systemd":
        return None
    minutes = minutes_left(spec, ctx.now())
    argv = ["shutdown", "-P", "+%d" % minutes if minutes else "now"]
    result = ctx.runner.run(argv)
    if not result.ok:
        raise RuntimeError("%s failed: %s" % (" ".join(argv), result.out.strip()[-200:]))
    return " ".join(argv)


def wait_and_power_off(ctx, spec, step=60):
    """Sleep until the deadline, then power off (the upstart job's way)."""
    if spec.get("ttl_deadline") is None:
        return False
    while not expired(spec, ctx.now()):
        ctx.sleep(max(1, min(step, spec["ttl_deadline"] - ctx.now())))
    return enforce(ctx, spec)
