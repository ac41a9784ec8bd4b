"""The master agent's signed `leave` (invoke shrink, issue 15 item 1): the named nodes
leave the membership, Disco's hosts table, dnsmasq hosts and known_hosts in one apply;
their heartbeats no longer bring them back; forged, unsigned, tampered or replayed
leaves and a leave of the master are refused with nothing changed."""

import json
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from conftest import HAVE_SSH_KEYGEN
from test_agent_cluster import TOKEN, Cluster, read

from imagebake.agent import protocol as P

pytestmark = pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="ssh-keygen is not installed")

WATCHED = ("/var/lib/imagebake/nodes.json", "/home/disco/.ssh/known_hosts",
           "/etc/imagebake/hosts", "/usr/var/disco/disco_8989.config")


@pytest.fixture
def cluster(agent_ctx):
    c = Cluster(agent_ctx, expected=3)
    yield c
    c.master.stop()


def _post(port, body):
    try:
        response = urlopen(Request(f"http://127.0.0.1:{port}/v1/leave", data=body,
                                   method="POST"), timeout=5)
        return response.status, response.read()
    except HTTPError as exc:
        return exc.code, exc.read()


def _files(ctx):
    return {p: read(ctx, p) for p in WATCHED}


def test_leave_removes_the_node_everywhere_and_its_heartbeat_stays_out(cluster):
    master = cluster.start_master()
    nodes = [cluster.add_node(i) for i in (1, 2, 3)]
    mctx = cluster.mctx
    assert master.master.summary()["ddfs_replicas"] == 3
    request = P.make_leave_request("demo", mctx.now(), ["node03", "node09"])
    code, body = _post(cluster.port, P.seal(TOKEN, request))
    assert code == 200, body
    reply = P.open_envelope(TOKEN, body, "demo", mctx.now(), "leave_reply")
    assert reply["in_reply_to"] == request["nonce"]
    assert reply["removed"] == ["node03"] and reply["unknown"] == ["node09"]
    assert [h[0] for h in reply["hosts"]] == ["master", "node01", "node02"]

    registry = json.loads(read(mctx, "/var/lib/imagebake/nodes.json"))
    assert [n["hostname"] for n in registry["nodes"]] == ["node01", "node02"]
    assert "node03" in registry["left"]
    config = json.loads(read(mctx, "/usr/var/disco/disco_8989.config"))
    assert [h for h, _ in config["hosts"]] == ["node01", "node02"]
    assert "node03" not in read(mctx, "/etc/imagebake/hosts")
    known = read(mctx, "/home/disco/.ssh/known_hosts")
    assert "node03" not in known and nodes[2].host_pubkey.split(" ")[1] not in known
    assert "DDFS_BLOB_REPLICAS = 3" in read(mctx, "/etc/disco/settings.py")

    # the removed machine keeps heartbeating until it is terminated: refused
    assert nodes[2].heartbeat() is False
    assert "node03" not in master.master.nodes
    assert "node03" not in read(mctx, "/etc/imagebake/hosts")
    assert nodes[0].heartbeat() is True  # the others stay members
    code, _ = _post(cluster.port, P.seal(TOKEN, request))
    assert code == 403  # a replay


@pytest.mark.parametrize("how", ["wrong-token", "unsigned", "tampered", "master",
                                 "other-cluster", "bad-names"])
def test_forged_or_bad_leave_is_refused_and_nothing_changes(cluster, how):
    master = cluster.start_master()
    for i in (1, 2, 3):
        cluster.add_node(i)
    before = _files(cluster.mctx)
    request = P.make_leave_request("demo", cluster.mctx.now(), ["node02"])
    if how == "wrong-token":
        body, says = P.seal("ee" * 32, request), b"bad mac"
    elif how == "unsigned":
        body = json.dumps({"msg": request, "mac": "0" * 64}, sort_keys=True,
                          separators=(",", ":")).encode()
        says = b"bad mac"
    elif how == "tampered":  # signed for node02, changed to node01 afterwards
        body = P.seal(TOKEN, request).replace(b'"node02"', b'"node01"')
        says = b"bad mac"
    elif how == "master":
        body, says = P.seal(TOKEN, dict(request, hostnames=["master"])), b"master cannot leave"
    elif how == "other-cluster":
        body, says = P.seal(TOKEN, dict(request, cluster="other")), b"cluster"
    else:
        body, says = P.seal(TOKEN, dict(request, hostnames=["node02", "x y"])), b"hostnames"
    code, text = _post(cluster.port, body)
    assert code == 403 and says in text, text
    assert _files(cluster.mctx) == before
    assert sorted(master.master.nodes) == ["node01", "node02", "node03"]


def test_leave_fields():
    msg = P.make_leave_request("demo", 1, ["node02", "node01", "node02"])
    assert msg["hostnames"] == ["node01", "node02"]
    assert P.check_leave_fields(msg) is msg
    for bad in ([], ["a" * 300], "node01", [1], ["node01", "node01"]):
        with pytest.raises(P.ProtocolError):
            P.check_leave_fields(dict(msg, hostnames=bad))
    with pytest.raises(P.ProtocolError):
        P.check_leave_fields(dict(msg, extra=1))
