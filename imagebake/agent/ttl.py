"""Time to live: every machine powers itself off once its TTL deadline has passed.

The power-off does not depend on the agent staying up: at boot a separate unit
runs `imagebake-agent ttl` (provision/50-agent.sh). Under systemd that hands
the deadline to `shutdown -P +MINUTES` (logind keeps the schedule; stopping or
crashing the agent does not cancel it); under upstart its own job waits
(`ttl --wait`, respawned without limit) and powers off. The agent also checks
the deadline itself between phases and in its loop (belt and braces, and the
only mechanism in a container, where there is no init to power off).

The deadline starts as the spec's ttl_deadline and can be moved later
(`invoke extend`: a signed request to the master agent; nodes follow through the
master's signed heartbeat reply). A moved deadline is kept in DEADLINE_FILE
(root-only), which every reader prefers to the spec: the `ttl --wait` job re-reads
it every minute, and under systemd the agent re-issues `shutdown -P +N` (a new
schedule replaces the old one).
"""

from .fsutil import dump_json, load_json, write_atomic
from .services import init_system

DEADLINE_FILE = "/var/lib/imagebake/ttl.json"
MAX_TTL = 30 * 24 * 3600  # a moved deadline is at most this far ahead


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def moved_deadline(ctx):
    """The deadline `extend` moved to (DEADLINE_FILE), or None."""
    data = load_json(ctx.path(DEADLINE_FILE), None)
    value = data.get("ttl_deadline") if isinstance(data, dict) else None
    return value if _int(value) and value > 0 else None


def deadline(ctx, spec):
    """The deadline in force: a moved one, else the spec's (None: no TTL)."""
    moved = moved_deadline(ctx)
    return moved if moved is not None else spec.get("ttl_deadline")


def expired(spec, now, ctx=None):
    when = deadline(ctx, spec) if ctx is not None else spec.get("ttl_deadline")
    return when is not None and now >= when


def power_off(ctx, why):
    """Power this machine off (ctx.power_off in tests); returns what was run.

    Without an init system (a container) the agent ends: it is the child of the
    container's init (tini), so the container stops with it.
    """
    ctx.log.warning("%s: powering off", why)
    if ctx.power_off is not None:
        return ctx.power_off(ctx)
    return default_power_off(ctx)


def default_power_off(ctx):
    """shutdown -h now (or poweroff); without an init system just end the agent."""
    if init_system(ctx) == "none":
        ctx.log.warning("no init system (container): exiting the agent")
        raise SystemExit(0)
    for argv in (["shutdown", "-h", "now"], ["poweroff"]):
        result = ctx.runner.run(argv)
        if result.ok:
            return " ".join(argv)
    ctx.log.error("power off failed")
    raise SystemExit(3)


def enforce(ctx, spec):
    """Call the power-off action when the deadline has passed; True if it did."""
    if not expired(spec, ctx.now(), ctx):
        return False
    power_off(ctx, "ttl deadline %s passed" % deadline(ctx, spec))
    return True


def minutes_left(when, now):
    """Whole minutes until WHEN, rounded up (0 when it has passed)."""
    left = when - now
    return 0 if left <= 0 else (left + 59) // 60


def arm(ctx, spec):
    """Schedule the power-off with the init system; return what was run, or None.

    Only under systemd (`shutdown -P +N` returns at once and logind keeps the
    schedule; issuing it again replaces the schedule). Elsewhere return None: the
    caller waits (wait_and_power_off), or the agent's loop checks.
    """
    when = deadline(ctx, spec)
    if when is None or init_system(ctx) != "systemd":
        return None
    minutes = minutes_left(when, ctx.now())
    argv = ["shutdown", "-P", "+%d" % minutes if minutes else "now"]
    result = ctx.runner.run(argv)
    if not result.ok:
        raise RuntimeError("%s failed: %s" % (" ".join(argv), result.out.strip()[-200:]))
    return " ".join(argv)


def move(ctx, spec, new_deadline):
    """Record NEW_DEADLINE (a unix time after now) and re-arm; return how it is enforced.

    Never moves it into the past. Under systemd `shutdown -P +N` is issued again;
    under upstart the `ttl --wait` job reads the file within a minute; without
    init the agent's own loop reads it.
    """
    now = ctx.now()
    if not _int(new_deadline) or new_deadline <= now or new_deadline > now + MAX_TTL:
        raise ValueError("a new deadline must be after now and at most 30 days ahead, "
                         "got %r" % (new_deadline,))
    write_atomic(ctx.path(DEADLINE_FILE), dump_json({"ttl_deadline": new_deadline}),
                 mode=0o600, dir_mode=0o700)
    kind = init_system(ctx)
    if kind == "systemd":
        return arm(ctx, spec)
    if kind == "upstart":
        return "the imagebake-ttl job re-reads %s" % DEADLINE_FILE
    return "the agent's loop (no init system)"


def wait_and_power_off(ctx, spec, step=60, forever=False):
    """Sleep until the deadline (re-read every STEP s: `extend` may move it), then power
    off (the upstart job's way). FOREVER: keep waiting while there is no deadline, for
    one `extend` may set later."""
    while True:
        when = deadline(ctx, spec)
        if when is None:
            if not forever:
                return False
            ctx.sleep(step)
            continue
        if ctx.now() >= when:
            return enforce(ctx, spec)
        ctx.sleep(max(1, min(step, when - ctx.now())))
