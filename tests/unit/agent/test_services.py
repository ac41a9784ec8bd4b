"""services.py: the init system is detected and driven with the right commands."""

import os

from imagebake.agent import services
from imagebake.agent.runner import Result


def write(ctx, path, text, mode=0o644):
    full = ctx.path(path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as handle:
        handle.write(text)
    os.chmod(full, mode)
    return full


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
