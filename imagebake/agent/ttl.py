"""Time to live: every machine powers itself off once ttl_deadline has passed."""

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
