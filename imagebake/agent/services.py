"""Start/restart/reload daemons under systemd, upstart or no init (containers)."""

import os
import signal

from .fsutil import makedirs, read_text

SYSTEMD_UNITS = {"sshd": ("ssh", "sshd"), "dnsmasq": ("dnsmasq",)}
UPSTART_NAMES = {"sshd": "ssh", "dnsmasq": "dnsmasq"}
PIDFILES = {"sshd": ("/run/sshd.pid", "/var/run/sshd.pid"),
            "dnsmasq": ("/run/dnsmasq/dnsmasq.pid", "/var/run/dnsmasq/dnsmasq.pid",
                        "/run/dnsmasq.pid", "/var/run/dnsmasq.pid")}
DIRECT = {"sshd": ["sshd"],  # resolved on PATH + /usr/sbin: absolute for re-exec
          "dnsmasq": ["dnsmasq", "--conf-file=/etc/dnsmasq.conf"]}


def init_system(ctx):
    """'systemd', 'upstart' or 'none' (a container without init)."""
    if os.path.isdir(ctx.path("/run/systemd/system")):
        return "systemd"
    if os.path.exists(ctx.path("/sbin/initctl")):
        result = ctx.runner.run(["/sbin/initctl", "version"])
        if result.ok and "upstart" in result.out:
            return "upstart"
    return "none"


def _running_pid(ctx, name):
    for pidfile in PIDFILES.get(name, ()):
        text = read_text(ctx.path(pidfile))
        try:
            pid = int((text or "").split()[0])
        except (ValueError, IndexError):
            continue
        try:
            os.kill(pid, 0)
        except OSError:
            continue
        return pid
    return None


def _systemctl(ctx, verb, name):
    last = None
    for unit in SYSTEMD_UNITS.get(name, (name,)):
        last = ctx.runner.run(["systemctl", verb, unit])
        if last.ok:
            return True, "systemctl %s %s" % (verb, unit)
    return False, "systemctl %s %s failed: %s" % (verb, name, last.out.strip()[-200:])


def restart(ctx, name, reload_only=False):
    """(Re)start a daemon (sshd, dnsmasq); reload_only sends SIGHUP where possible.

    Returns (ok, how).
    """
    kind = init_system(ctx)
    if kind == "systemd":
        return _systemctl(ctx, "reload-or-restart" if reload_only else "restart", name)
    if kind == "upstart":
        service = UPSTART_NAMES.get(name, name)
        result = ctx.runner.run(["service", service, "restart"])
        return result.ok, "service %s restart%s" % (
            service, "" if result.ok else " failed: " + result.out.strip()[-200:])
    pid = _running_pid(ctx, name)
    if pid is not None:
        ctx.runner.kill(pid, signal.SIGHUP)
        return True, "kill -HUP %d" % pid
    if name == "sshd":
        makedirs(ctx.path("/run/sshd"), 0o755)
    argv = DIRECT[name]
    result = ctx.runner.run(argv)
    return result.ok, "%s%s" % (" ".join(argv), "" if result.ok else
                                " failed: " + result.out.strip()[-200:])
