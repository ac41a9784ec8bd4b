"""boot.py: the named boot phases form a whole cluster on 127.0.0.0/8, keep keys across
runs, set the host name, fence the metadata service first, and do nothing once the TTL
has passed."""

import json
import os

from imagebake.agent import source, spec
from imagebake.agent.loop import Agent
from imagebake.agent.report import status_report
from imagebake.agent.spec import dumps, make_spec

from .helpers import COOKIE, TOKEN, Clock, mode, needs_keygen, read, snapshot, write_spec


@needs_keygen
def test_master_and_three_nodes_write_everything(cluster):
    master = cluster.start_master()
    mctx = cluster.mctx
    nodes = [cluster.add_node(i) for i in (1, 2, 3)]

    # master: registry, known_hosts pinned per node, hosts file, Disco config
    registry = json.loads(read(mctx, "/var/lib/imagebake/nodes.json"))
    assert [n["hostname"] for n in registry["nodes"]] == ["node01", "node02", "node03"]
    known = read(mctx, "/home/disco/.ssh/known_hosts").splitlines()
    host_key = master.host_pubkey.split(" ")
    assert "master,127.0.0.1,localhost {} {}".format(*tuple(host_key[:2])) in known
    for agent in nodes:
        line = "{},{} {}".format(agent.hostname, agent.addresses[0],
                             " ".join(agent.host_pubkey.split(" ")[:2]))
        assert line in known
    # least privilege: no node key is authorized on the master (master_workers = 0)
    authorized = read(mctx, "/home/disco/.ssh/authorized_keys")
    for agent in nodes:
        assert agent.disco_pubkey.split(" ")[1] not in authorized
    assert master.disco_pubkey.split(" ")[1] not in authorized
    hosts = read(mctx, "/etc/imagebake/hosts").splitlines()[1:]
    assert hosts == ["127.0.0.1 master", "127.0.0.11 node01", "127.0.0.12 node02",
                     "127.0.0.13 node03"]
    config = json.loads(read(mctx, "/usr/var/disco/disco_8989.config"))
    cores = str(os.cpu_count())
    assert config == {"hosts": [["node01", cores], ["node02", cores], ["node03", cores]],
                      "blacklist": [], "gc_blacklist": []}
    settings = read(mctx, "/etc/disco/settings.py")
    assert 'DISCO_MASTER_HOST = "master"' in settings
    assert "DDFS_BLOB_REPLICAS = 3" in settings
    assert read(mctx, "/etc/resolv.conf").splitlines()[1] == "nameserver 127.0.0.1"
    assert read(mctx, "/home/disco/.erlang.cookie") == COOKIE
    assert mode(mctx.path("/home/disco/.erlang.cookie")) == 0o400
    # the spec came from a root-only file: no copy of the secrets anywhere else
    assert not os.path.exists(mctx.path("/var/lib/imagebake/spec.json"))
    assert mode(mctx.path("/var/lib/imagebake")) == 0o700
    assert mode(mctx.path("/home/disco/.ssh")) == 0o700
    assert mode(mctx.path("/home/disco/.ssh/id_ed25519")) == 0o600

    # nodes: master's disco key authorized, master's host key pinned, resolver -> master
    for agent in nodes:
        ctx = agent.ctx
        authorized = read(ctx, "/home/disco/.ssh/authorized_keys")
        assert master.disco_pubkey in authorized
        known = read(ctx, "/home/disco/.ssh/known_hosts")
        assert "master,127.0.0.1 {}".format(" ".join(host_key[:2])) in known
        resolv = read(ctx, "/etc/resolv.conf").splitlines()
        assert resolv[1:] == ["nameserver 127.0.0.1", "search example.internal",
                              "options ndots:1"]
        assert read(ctx, "/home/disco/.erlang.cookie") == COOKIE
        assert agent.state.data["phases"]["disco"]["status"] == "ok"
        assert status_report(ctx)[1] is True

    report, ready = status_report(mctx)
    assert ready and report["joined"] == 3
    assert report["disco"] == "absent: config written, not started"
    # dnsmasq was reloaded through the runner (no init system in the temp root)
    assert any("dnsmasq" in c for c in mctx.runner.commands())


@needs_keygen
def test_keys_are_never_regenerated(cluster):
    cluster.start_master()
    agent = cluster.add_node(1)
    before = snapshot(agent.ctx.root)
    calls = len(agent.ctx.runner.calls)
    again = Agent(agent.ctx, addresses=agent.addresses)
    assert again.setup()
    after = snapshot(agent.ctx.root)
    for path in ("etc/ssh/ssh_host_ed25519_key", "home/disco/.ssh/id_ed25519",
                 "home/disco/.ssh/id_ed25519.pub"):
        assert after[path] == before[path]
    assert not [c for c in agent.ctx.runner.calls[calls:] if c[0] == "ssh-keygen"]


@needs_keygen
def test_hostname_from_spec_is_written_in_place(agent_ctx):
    ctx = agent_ctx("h", hostname="ip-10-0-0-7")
    path = ctx.path("/etc/hostname")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as handle:
        handle.write("ip-10-0-0-7\n")
    inode = os.stat(path).st_ino
    spec = make_spec("demo", "node", master_address="127.0.0.1", hostname="node05",
                     token=TOKEN, cookie=COOKIE)
    write_spec(ctx, spec)
    agent = Agent(ctx)
    agent.state.run_phase("spec", agent.phase_spec)
    assert read(ctx, "/etc/hostname") == "node05\n" and os.stat(path).st_ino == inode
    assert ["hostname", "node05"] in ctx.runner.calls


def write(ctx, path, text, mode=0o644):
    full = ctx.path(path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as handle:
        handle.write(text)
    os.chmod(full, mode)
    return full


def test_expired_spec_powers_off_before_any_work(agent_ctx):
    calls = []
    ctx = agent_ctx(clock=Clock(5000), power_off=lambda c: calls.append("off"))
    write(ctx, source.DEFAULT_SPEC, dumps(make_spec("c", "master", ttl_deadline=4000)))
    assert Agent(ctx).setup() is False
    assert calls == ["off"]
    assert not os.path.exists(ctx.path("/etc/ssh"))


def test_fence_at_every_boot_whatever_the_source(agent_ctx):
    ctx = agent_ctx()
    ctx.runner.results["iptables"] = __import__(
        "imagebake.agent.runner", fromlist=["Result"]).Result(1, "")
    write_spec(ctx, spec.make_spec("demo", "node", master_address="10.0.0.5", token=TOKEN,
                                   cookie=COOKIE))
    agent = Agent(ctx)
    agent.state.run_phase("spec", agent.phase_spec)
    fence = [c for c in ctx.runner.calls if c[0] == "iptables"]
    assert fence and fence[0][:2] == ["iptables", "-C"] and "169.254.169.254" in fence[0]
    assert ["iptables", "-A"] + fence[0][2:] in ctx.runner.calls
