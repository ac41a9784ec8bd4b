"""dns.py: the resolver is rewritten in place or through resolvconf, the master saves its
upstream first, and the hosts file renders."""

import os

from imagebake.agent import dns


def test_plain_resolv_conf_rewritten_in_place(agent_ctx):
    ctx = agent_ctx()
    path = ctx.path("/etc/resolv.conf")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as handle:
        handle.write("# docker\nnameserver 127.0.0.11\nsearch corp.internal\noptions ndots:0\n")
    inode = os.stat(path).st_ino
    changed, how = dns.point_resolver(ctx, "10.0.0.5")
    assert changed and how == "resolv.conf in place"
    assert os.stat(path).st_ino == inode  # bind mount safe: same file
    assert open(path).read().splitlines()[1:] == [
        "nameserver 10.0.0.5", "search corp.internal", "options ndots:0"]
    assert dns.point_resolver(ctx, "10.0.0.5")[0] is False


def test_resolvconf_layout_writes_head_and_runs_resolvconf(agent_ctx):
    ctx = agent_ctx()
    os.makedirs(ctx.path("/etc/resolvconf/resolv.conf.d"))
    changed, how = dns.point_resolver(ctx, "10.0.0.5")
    assert changed and how == "resolvconf head"
    head = open(ctx.path("/etc/resolvconf/resolv.conf.d/head")).read()
    assert "nameserver 10.0.0.5" in head
    assert ["resolvconf", "-u"] in ctx.runner.calls
    assert not os.path.exists(ctx.path("/etc/resolv.conf"))
    ctx.runner.calls[:] = []
    assert dns.point_resolver(ctx, "10.0.0.5")[0] is False
    assert ctx.runner.calls == []  # unchanged: no resolvconf -u


def test_master_saves_upstream_before_pointing_at_itself(agent_ctx):
    ctx = agent_ctx()
    os.makedirs(ctx.path("/etc"))
    with open(ctx.path("/etc/resolv.conf"), "w") as handle:
        handle.write("nameserver 10.0.0.2\nnameserver 127.0.0.1\nnameserver 127.0.0.11\n")
    assert dns.save_upstream(ctx)
    dns.point_resolver(ctx, "127.0.0.1")
    assert not dns.save_upstream(ctx)  # kept from the first run
    # dnsmasq's own address would loop; Docker's embedded resolver is a real upstream
    assert open(ctx.path(dns.UPSTREAM_FILE)).read() == (
        "nameserver 10.0.0.2\nnameserver 127.0.0.11\n")


def test_hosts_file_render():
    text = dns.render_hosts([("master", "10.0.0.5"), ("node01", "10.0.0.11")])
    assert text.splitlines()[1:] == ["10.0.0.5 master", "10.0.0.11 node01"]
