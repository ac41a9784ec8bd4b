"""Spot interruption notices (issue 22): each agent polls IMDS (IMDSv2, bounded, every
5 s) for instance-action and rebalance; a node sends a signed notice to the master, which
blacklists it in Disco and DDFS at once, logs one line, shows it interrupted, and forgets
it once its heartbeat stops. The master's own notice is one line in status. Served by the
qemu target's emulated IMDS and a fake Disco API on 127.0.0.1."""

import logging

import pytest

from imagebake.agent import node as N
from imagebake.agent import notice, protocol
from imagebake.agent.loop import Agent
from imagebake.agent.master import GONE_AFTER
from imagebake.agent.runner import Result
from imagebake.report import render_status
from imagebake.targets.qemu import imds as emulator

from .helpers import Clock, Cluster, free_port, needs_keygen, with_disco
from .test_imds import _instance
from .test_master import FakeDisco

ACTION = {"action": "terminate", "time": "2026-12-03T10:42:00Z"}
REBALANCE = {"noticeTime": "2026-12-03T10:40:00Z"}


class Records(logging.Handler):
    def __init__(self):
        logging.Handler.__init__(self, logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def warnings(self, text):
        return [r.getMessage() for r in self.records
                if r.levelno >= logging.WARNING and text in r.getMessage()]


@pytest.fixture
def log():
    logger = logging.getLogger("imagebake_agent")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def metadata():
    """The emulated IMDS for 127.0.0.1 (IMDSv2 required); set(**fields) changes what the
    instance has, as EC2 does when it sends a notice."""
    server, url = emulator.serve({"instances": {"127.0.0.1": _instance("{}")}})

    def change(**fields):
        inst = dict(_instance("{}"), **fields)
        server.fabric.load({"instances": {"127.0.0.1": inst}})

    server.url, server.change = url, change
    yield server
    server.shutdown()
    server.server_close()


# ------------------------------------------------------------------ polling IMDS
def test_watch_finds_each_notice_once_with_one_imdsv2_token(agent_ctx, metadata):
    clock = Clock()
    watch = notice.Watch(agent_ctx(clock=clock), metadata.url)
    assert watch.poll() == []  # 404: nothing to say
    metadata.change(**{"spot-instance-action": ACTION})
    assert watch.poll() == []  # not due yet: one poll per INTERVAL
    clock.now += notice.INTERVAL
    assert watch.poll() == [{"kind": "instance-action", "action": "terminate",
                             "time": ACTION["time"]}]
    clock.now += notice.INTERVAL
    assert watch.poll() == []  # the same notice again is not new
    metadata.change(**{"spot-instance-action": ACTION, "rebalance": REBALANCE})
    clock.now += notice.INTERVAL
    assert watch.poll() == [{"kind": "rebalance", "action": "rebalance",
                             "time": REBALANCE["noticeTime"]}]
    # HttpTokens=required: every answer above needed the token, fetched once and kept
    assert len(metadata.fabric.tokens) == 1 and watch.polls == 4


def test_watch_fetches_a_new_token_after_a_401(agent_ctx, metadata):
    clock = Clock()
    watch = notice.Watch(agent_ctx(clock=clock), metadata.url)
    assert watch.poll() == []
    metadata.fabric.tokens.clear()  # the service no longer knows the token: 401
    metadata.change(**{"spot-instance-action": ACTION})
    clock.now += notice.INTERVAL
    assert [n["kind"] for n in watch.poll()] == ["instance-action"]
    assert len(metadata.fabric.tokens) == 1


def test_watch_without_a_metadata_service_backs_off(agent_ctx, log):
    clock = Clock()
    watch = notice.Watch(agent_ctx(clock=clock), f"http://127.0.0.1:{free_port()}")
    assert watch.poll() == []
    assert watch.next_at == clock.now + notice.UNREACHABLE_INTERVAL
    assert not log.warnings("spot")  # an info line, not a warning per poll


def test_a_spec_from_a_file_has_no_watch(agent_ctx, metadata):
    agent = Agent(agent_ctx(imds_url=metadata.url))
    agent.origin = "/run/imagebake/spec.json"  # docker: bind-mounted spec, no IMDS
    assert agent.notice_watch() is None
    agent.origin = "imds-v2"
    assert isinstance(agent.notice_watch(), notice.Watch)


@pytest.mark.parametrize("body,expected", [
    (b'{"action": "stop", "time": "t"}', {"kind": "instance-action", "action": "stop",
                                          "time": "t"}),
    (b"not json", None), (b"[1]", None), (b'{"time": "t"}', None),
    (b'{"action": "term\\u0000inate"}', None),
])
def test_parse_takes_only_a_well_formed_notice(body, expected):
    assert notice.parse("instance-action", body) == expected


# ------------------------------------------------------------------ the master's part
def disco_cluster(agent_ctx, expected=3):
    """A master whose Disco runs (its API is FakeDisco), with nodes node01 and node02."""
    disco = FakeDisco()
    c = Cluster(agent_ctx, expected=expected)
    with_disco(c, disco.port)
    c.mctx.runner.results["/usr/bin/disco"] = Result(0, "Master master:8989 running")
    c.start_master()
    c.add_node(1)
    c.add_node(2)
    return c, disco


def blacklisted(disco):
    return [(path, body) for path, body in disco.bodies if "blacklist" in path]


def send(c, i, seen, hostname=None):
    agent = c.nodes[i - 1]
    identity = agent.identity()
    identity.hostname = hostname or identity.hostname
    return N.send_notice(agent.ctx, agent.spec, identity, seen)


NOTICE = {"kind": "instance-action", "action": "terminate", "time": ACTION["time"]}


@needs_keygen
def test_a_notice_blacklists_the_node_at_once_and_status_shows_it(agent_ctx, log):
    c, disco = disco_cluster(agent_ctx)
    try:
        assert send(c, 1, NOTICE) == "blacklisted in Disco and DDFS; DDFS GC started"
        assert blacklisted(disco) == [("/disco/ctrl/blacklist", "node01"),
                                      ("/disco/ctrl/gc_blacklist", "node01")]
        # then a GC run, which is what copies its blobs away (it runs once a day by itself)
        assert [p for p, _ in disco.bodies].index("/ddfs/ctrl/gc_start") > \
            [p for p, _ in disco.bodies].index("/disco/ctrl/gc_blacklist")
        (line,) = log.warnings("spot notice from node01")
        assert "instance-action terminate at 2026-12-03T10:42:00Z" in line
        summary = c.master.master.summary()
        assert summary["interrupted"] == {
            "node01": "instance-action terminate at 2026-12-03T10:42:00Z"}
        report = {"name": "demo", "target": "docker", "ready": True,
                  "master": {"agent": summary},
                  "nodes": [{"hostname": "node01", "state": "running", "joined": True},
                            {"hostname": "node02", "state": "running", "joined": True}]}
        text = render_status(report)
        assert [ln.split()[1] for ln in text.splitlines() if ln.startswith("  node0")] == [
            "interrupted", "running"]
    finally:
        c.master.stop()
        disco.close()


@needs_keygen
def test_a_notice_in_discos_first_minutes_says_the_gc_run_waits(agent_ctx, log):
    c, disco = disco_cluster(agent_ctx)
    disco.GC_START = "GC is waiting"  # Disco's first 5 minutes (DDFS_GC_INITIAL_WAIT)
    try:
        assert send(c, 1, NOTICE) == ("blacklisted in Disco and DDFS; DDFS GC waits for its "
                                      "first run (5 min after Disco started)")
        (line,) = log.warnings("spot notice from node01")
        assert line.endswith("DDFS GC waits for its first run (5 min after Disco started)")
    finally:
        c.master.stop()
        disco.close()


@needs_keygen
def test_the_same_notice_twice_acts_and_logs_once(agent_ctx, log):
    c, disco = disco_cluster(agent_ctx)
    try:
        send(c, 1, NOTICE)
        assert send(c, 1, NOTICE) == "known"
        assert len(blacklisted(disco)) == 2 and len(log.warnings("spot notice from")) == 1
        # a rebalance then: one more line, no second blacklist
        assert send(c, 1, {"kind": "rebalance", "action": "rebalance", "time": ""}) == \
            "already blacklisted"
        assert len(blacklisted(disco)) == 2 and len(log.warnings("spot notice from")) == 2
    finally:
        c.master.stop()
        disco.close()


@needs_keygen
def test_a_notice_for_another_node_from_a_members_address_is_refused(agent_ctx):
    c, disco = disco_cluster(agent_ctx)
    try:
        with pytest.raises(N.JoinError, match="403"):
            send(c, 1, NOTICE, hostname="node02")  # from node01's address
        with pytest.raises(N.JoinError, match="403"):
            send(c, 1, NOTICE, hostname="master")
        assert blacklisted(disco) == [] and c.master.master.interrupted == {}
    finally:
        c.master.stop()
        disco.close()


@needs_keygen
def test_a_notice_while_still_joining_keeps_the_node_out(agent_ctx, log):
    c, disco = disco_cluster(agent_ctx)
    try:
        joining = c.nodes[0].identity()
        joining.hostname, joining.addresses = "node03", ["127.0.0.13"]
        outcome = N.send_notice(c.nodes[0].ctx, c.nodes[0].spec, joining, NOTICE)
        assert outcome == "not a member yet: its join will be refused"
        assert blacklisted(disco) == []  # Disco does not know it: nothing to blacklist
        with pytest.raises(N.JoinError, match="spot interruption notice"):
            N.join_once(c.nodes[0].ctx, c.nodes[0].spec, joining)
        assert "node03" not in c.master.master.nodes
        assert c.master.master.summary()["interrupted"] == {
            "node03": "instance-action terminate at 2026-12-03T10:42:00Z"}
    finally:
        c.master.stop()
        disco.close()


@needs_keygen
def test_a_notice_under_a_name_not_yet_joined_does_not_keep_out_another_address(agent_ctx):
    """A token holder cannot pre-empt a future node's name: a notice sent for node03 from
    one address refuses node03's join only from that address, not the real node03's."""
    c, disco = disco_cluster(agent_ctx)
    try:
        squatter = c.nodes[0].identity()
        squatter.hostname, squatter.addresses = "node03", ["127.0.0.13"]
        N.send_notice(c.nodes[0].ctx, c.nodes[0].spec, squatter, NOTICE)
        real = c.nodes[0].identity()
        real.hostname, real.addresses = "node03", ["127.0.0.14"]
        N.join_once(c.nodes[0].ctx, c.nodes[0].spec, real)
        assert c.master.master.nodes["node03"]["address"] == "127.0.0.14"
        # the squatter's notice is not the real node's: not shown, never forgets it
        assert "node03" not in c.master.master.summary()["interrupted"]
        assert blacklisted(disco) == []
    finally:
        c.master.stop()
        disco.close()


@needs_keygen
def test_an_interrupted_node_is_forgotten_once_its_heartbeat_stops(agent_ctx, log):
    c, disco = disco_cluster(agent_ctx)
    master = c.master.master
    try:
        send(c, 1, NOTICE)
        now = c.mctx.now()
        assert master.forget_gone(now + GONE_AFTER - 1) == []
        c.nodes[1].heartbeat()  # node02 is alive; node01 says nothing more
        assert master.forget_gone(now + GONE_AFTER) == ["node01"]
        assert sorted(master.nodes) == ["node02"] and master.interrupted == {}
        table = [body for path, body in disco.bodies if path.endswith("save_config_table")]
        assert [row[0] for row in table[-1]] == ["node02"]
        assert len(log.warnings("node node01 is gone after its spot notice")) == 1
        assert master.forget_gone(now + 10 * GONE_AFTER) == []  # node02: no notice
    finally:
        c.master.stop()
        disco.close()


# ------------------------------------------------------------------ the loop
@needs_keygen
def test_the_node_loop_sends_its_notice_and_retries_until_the_master_answers(
        agent_ctx, metadata, log):
    c, disco = disco_cluster(agent_ctx)
    try:
        agent = c.nodes[0]
        agent.notices = notice.Watch(agent.ctx, metadata.url)
        metadata.change(**{"spot-instance-action": ACTION})
        real_port = agent.spec["master"]["join_port"]
        agent.spec["master"]["join_port"] = free_port()  # the master unreachable
        agent.watch_notices()
        assert agent.unsent and blacklisted(disco) == []
        agent.spec["master"]["join_port"] = real_port
        agent.watch_notices()  # not due for a poll, but the unsent notice goes now
        assert agent.unsent == []
        assert [b for _, b in blacklisted(disco)] == ["node01", "node01"]
        assert len(log.warnings("spot notice for this machine")) == 1
    finally:
        c.master.stop()
        disco.close()


@needs_keygen
def test_the_masters_own_notice_is_one_status_line(agent_ctx, metadata, log):
    c, disco = disco_cluster(agent_ctx)
    try:
        c.master.notices = notice.Watch(c.mctx, metadata.url)
        metadata.change(**{"spot-instance-action": ACTION})
        c.master.watch_notices()
        summary = c.master.master.summary()
        assert summary["master_notice"] == "instance-action terminate at 2026-12-03T10:42:00Z"
        assert blacklisted(disco) == []
        (line,) = log.warnings("spot notice for the master itself")
        assert "the master will go" in line
        text = render_status({"name": "demo", "target": "aws", "ready": True,
                              "master": {"agent": summary}, "nodes": []})
        (warning,) = [ln for ln in text.splitlines() if "spot notice" in ln]
        assert "the master will go, and the cluster's data" in warning
    finally:
        c.master.stop()
        disco.close()


def test_notice_fields_are_checked():
    good = protocol.make_notice("demo", 1, "node01", "instance-action", "terminate", "t")
    assert protocol.check_notice_fields(dict(good))
    for bad in ({"kind": "reboot"}, {"hostname": "Node_01"}, {"action": ""},
                {"action": "x" * 201}, {"time": "\x00"}, {"extra": 1}):
        with pytest.raises(protocol.ProtocolError):
            protocol.check_notice_fields(dict(good, **bad))


def test_the_qemu_fabric_serves_the_notice_send_spot_notice_sets(tmp_path, monkeypatch):
    from imagebake.targets.qemu import ec2

    (tmp_path / "id_ed25519.pub").write_text("ssh-ed25519 AAAA test\n")
    vm = {"index": 1, "role": "node", "ip": "10.77.0.12", "mac": "52:54:00:00:00:02"}
    ec2.new_instance(vm, "{}", "required")
    record = {"name": "vmtest", "dir": str(tmp_path), "subnet": "10.77.0.0/24",
              "ami_ids": {"node": "ami-1"}, "vms": {"node02": vm}}
    monkeypatch.setattr(ec2, "reload", lambda r: None)  # no emulator process here
    monkeypatch.setattr(ec2.state, "save", lambda r: None)
    sent = ec2.send_spot_notice(record, "node02")
    inst = ec2._instances(record)["10.77.0.12"]
    status, body = emulator.lookup(inst, ["meta-data", "spot", "instance-action"])
    assert status == 200 and notice.parse("instance-action", body)["time"] == sent["time"]
    assert emulator.lookup(inst, ["meta-data", "events", "recommendations",
                                  "rebalance"])[0] == 404
