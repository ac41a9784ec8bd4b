"""protocol.py: canonical JSON, the MAC over the raw bytes before any parse, envelopes
refused when forged, tampered, re-encoded, replayed, stale or of another cluster;
message fields checked whole."""

import json

import pytest

from imagebake.agent import protocol, spec
from imagebake.agent import protocol as P

from .helpers import TOKEN, fake_key, needs_keygen


def test_canonical_encoding_is_sorted_compact_ascii():
    assert P.canonical({"b": 1, "a": [1, "é"]}) == b'{"a":[1,"\\u00e9"],"b":1}'
    assert P.canonical({"a": 1, "b": 2}) == P.canonical({"b": 2, "a": 1})


KEY_HEX = "11" * 32


def test_mac_is_hmac_sha256_over_canonical_json_with_hex_decoded_token():
    import hashlib
    import hmac
    msg = {"x": 1}
    expected = hmac.new(bytes.fromhex(KEY_HEX), b'{"x":1}', hashlib.sha256).hexdigest()
    assert P.mac(KEY_HEX, msg) == expected


PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG0ynmU5n5vG9g3bq3o8cIYdCm0k9Ox4xwQkA0n4sJ8v"


NOW = 1700000000


def join(**over):
    msg = P.make_join("demo", NOW, "node01", ["10.0.0.11"], 4, PUBKEY + " disco@node01", PUBKEY)
    msg.update(over)
    return msg


def open_join(body, now=NOW, replay=None, cluster="demo", token=KEY_HEX):
    msg = P.open_envelope(token, body, cluster, now, "join", replay)
    return P.check_join_fields(msg)


def test_good_join_verifies():
    msg = join()
    assert open_join(P.seal(KEY_HEX, msg)) == msg


def test_forged_mac():
    body = json.loads(P.seal(KEY_HEX, join()).decode())
    body["mac"] = "0" * 64
    with pytest.raises(P.ProtocolError, match="bad mac"):
        open_join(json.dumps(body).encode())


OTHER = "22" * 32


def test_wrong_token():
    with pytest.raises(P.ProtocolError, match="bad mac"):
        open_join(P.seal(OTHER, join()))


def test_tampered_field():
    body = json.loads(P.seal(KEY_HEX, join()).decode())
    body["msg"]["hostname"] = "evil"
    with pytest.raises(P.ProtocolError, match="bad mac"):
        open_join(json.dumps(body).encode())


def test_replayed_nonce():
    cache = P.ReplayCache()
    body = P.seal(KEY_HEX, join())
    open_join(body, replay=cache)
    with pytest.raises(P.ProtocolError, match="replayed"):
        open_join(body, replay=cache)


def test_forged_message_does_not_poison_replay_cache():
    cache = P.ReplayCache()
    msg = join()
    with pytest.raises(P.ProtocolError):
        open_join(P.seal(OTHER, msg), replay=cache)
    assert open_join(P.seal(KEY_HEX, msg), replay=cache) == msg


@pytest.mark.parametrize("delta", [-121, 121, -100000])
def test_ts_outside_window(delta):
    with pytest.raises(P.ProtocolError, match="window"):
        open_join(P.seal(KEY_HEX, join()), now=NOW + delta)


@pytest.mark.parametrize("delta", [-120, 0, 120])
def test_ts_inside_window(delta):
    open_join(P.seal(KEY_HEX, join()), now=NOW + delta)


def test_wrong_cluster():
    with pytest.raises(P.ProtocolError, match="cluster"):
        open_join(P.seal(KEY_HEX, join(cluster="other")))


def test_wrong_type():
    with pytest.raises(P.ProtocolError, match="type"):
        open_join(P.seal(KEY_HEX, join(type="welcome")))


@pytest.mark.parametrize("over", [
    {"hostname": "10.0.0.1"},
    {"hostname": "node01.example.com"},
    {"hostname": "Node01"},
    {"hostname": ""},
    {"hostname": "a b"},
    {"addresses": []},
    {"addresses": ["10.0.0.256"]},
    {"addresses": ["::1"]},
    {"addresses": "10.0.0.1"},
    {"cores": 0},
    {"cores": "4"},
    {"disco_pubkey": "ssh-rsa AAAA"},
    {"disco_pubkey": PUBKEY + "\nssh-ed25519 AAAAinjected"},
    {"host_pubkey": PUBKEY + " \r"},
    {"host_pubkey": 'command="sh" ' + PUBKEY},
    {"extra": 1},
    {"nonce": "short"},
])
def test_malformed_join_fields(over):
    with pytest.raises(P.ProtocolError):
        open_join(P.seal(KEY_HEX, join(**over)))


def test_garbage_bodies():
    for body in (b"", b"{", b"[]", b'{"msg": {}}', b'{"msg": 1, "mac": "x"}',
                 b"x" * (P.MAX_BODY + 1)):
        with pytest.raises(P.ProtocolError):
            open_join(body)


def test_welcome_checks_in_reply_to():
    req = join()
    welcome = P.make_welcome("demo", NOW, req["nonce"], "master", ["10.0.0.5"],
                             PUBKEY + " disco@master", PUBKEY, [["master", "10.0.0.5"]])
    msg = P.open_envelope(KEY_HEX, P.seal(KEY_HEX, welcome), "demo", NOW, "welcome")
    assert P.check_welcome_fields(msg, req["nonce"]) == welcome
    with pytest.raises(P.ProtocolError, match="not for our request"):
        P.check_welcome_fields(msg, P.new_nonce())


def test_replay_cache_is_bounded():
    cache = P.ReplayCache(window=10, limit=3)
    for i in range(3):
        cache.check_and_add(f"n{i}", NOW)
    # full: the oldest goes and its ts becomes the floor (no replay of it, ever)
    with pytest.raises(P.ProtocolError, match="older than the replay cache"):
        cache.check_and_add("n3", NOW)
    cache.check_and_add("n4", NOW + 1)
    assert len(cache) == 3
    cache.check_and_add("n5", NOW + 100)  # old ones expire by age
    assert len(cache) == 1


@pytest.mark.parametrize("check,value", [
    (spec.is_ipv4, "127.0.0.31\n"),
    (spec.is_short_hostname, "evil\n"),
    (spec.is_cluster_name, "evil\n"),
    (spec.is_address, "evil.example.com\n"),
    (spec.is_address, "10.0.0.5\n"),
    (protocol.is_pubkey, fake_key(1) + "\n"),
])
def test_validators_refuse_a_trailing_newline(check, value):
    assert check(value.rstrip("\n"))
    assert not check(value)


@pytest.mark.parametrize("comment", [
    "x\x00y", "x\x1b[2Jy", "x\x0by", "x\x0cy", "x\x1cy", "x\x85y", "x\u2028y", "x\u2029y",
])
def test_pubkey_comment_is_printable_ascii(comment):
    # The welcome's disco_pubkey goes, comment included, into a node's authorized_keys
    # (root writes it; merge_block re-reads it with splitlines()) and into logs: the JSON
    # \u escapes let a token holder put any character but \r \n there.
    assert protocol.is_pubkey(fake_key(1) + " disco@master")
    assert not protocol.is_pubkey(fake_key(1) + " " + comment)
    msg = {"in_reply_to": "a" * 32, "master_hostname": "master",
           "master_addresses": ["10.0.0.5"], "disco_pubkey": fake_key(1) + " " + comment,
           "host_pubkey": fake_key(2), "hosts": []}
    with pytest.raises(protocol.ProtocolError):
        protocol.check_welcome_fields(msg, "a" * 32)


def test_protocol_refuses_newlines_in_nonce_and_addresses():
    msg = protocol.make_join("demo", 1000, "node01", ["10.0.0.11"], 1, fake_key(1),
                             fake_key(2))
    for over in ({"nonce": msg["nonce"] + "\n"}, {"addresses": ["10.0.0.11\n"]},
                 {"hostname": "node01\n"}):
        bad = dict(msg, **over)
        with pytest.raises(protocol.ProtocolError):
            protocol.check_join_fields(
                protocol.open_envelope(TOKEN, protocol.seal(TOKEN, bad), "demo", 1000, "join"))


def test_deep_nesting_is_a_403_not_a_traceback():
    body = b'{"mac":"' + b"0" * 64 + b'","msg":' + b"[" * 30000 + b"]" * 30000 + b"}"
    with pytest.raises(protocol.ProtocolError):
        protocol.open_envelope(TOKEN, body, "demo", 1000, "join")
    body = b'{"msg":' + b"[" * 30000 + b"]" * 30000 + b',"mac":"00"}'
    with pytest.raises(protocol.ProtocolError):
        protocol.open_envelope(TOKEN, body, "demo", 1000, "join")


def test_reencoded_body_is_refused():
    msg = protocol.make_join("demo", 1000, "node01", ["10.0.0.11"], 1, fake_key(1),
                             fake_key(2))
    good = protocol.seal(TOKEN, msg)
    assert protocol.open_envelope(TOKEN, good, "demo", 1000, "join") == msg
    spaced = json.dumps(json.loads(good.decode()), indent=1).encode()
    with pytest.raises(protocol.ProtocolError):
        protocol.open_envelope(TOKEN, spaced, "demo", 1000, "join")


def test_a_full_cache_still_takes_fresh_nonces_and_refuses_old_replays():
    cache = protocol.ReplayCache(limit=100)
    for i in range(100):
        cache.check_and_add(f"{i:032x}", 1000, 1000)
    cache.check_and_add(f"{1000:032x}", 1001, 1001)  # fresh: accepted
    with pytest.raises(protocol.ProtocolError):
        cache.check_and_add(f"{0:032x}", 1000, 1001)  # evicted but still refused
    for i in range(2000):  # never grows past its limit
        cache.check_and_add(f"{5000 + i:032x}", 1002 + i, 1002 + i)
    assert len(cache) <= 100


def test_cache_evicts_by_age():
    cache = protocol.ReplayCache()
    cache.check_and_add(f"{1:032x}", 1000, 1000)
    cache.check_and_add(f"{2:032x}", 2000, 2000)
    assert len(cache) == 1


T0 = 1700000000


def test_welcome_fields_are_checked():
    welcome = P.make_welcome("demo", T0, "n" * 32, "master", ["10.0.0.5"], fake_key(1),
                             fake_key(2), [], ttl_deadline=T0, stop="idle")
    assert P.check_welcome_fields(dict(welcome), "n" * 32)
    for bad in ({"stop": ""}, {"stop": "x\ny"}, {"stop": 5}, {"ttl_deadline": "1"},
                {"ttl_deadline": -1}, {"ttl_deadline": True}):
        with pytest.raises(P.ProtocolError):
            P.check_welcome_fields(dict(welcome, **bad), "n" * 32)
    assert "stop" not in P.make_welcome("demo", T0, "n" * 32, "m", ["10.0.0.5"], fake_key(1),
                                        fake_key(2), [])


@needs_keygen
def test_leave_fields():
    msg = P.make_leave_request("demo", 1, ["node02", "node01", "node02"])
    assert msg["hostnames"] == ["node01", "node02"]
    assert P.check_leave_fields(msg) is msg
    for bad in ([], ["a" * 300], "node01", [1], ["node01", "node01"]):
        with pytest.raises(P.ProtocolError):
            P.check_leave_fields(dict(msg, hostnames=bad))
    with pytest.raises(P.ProtocolError):
        P.check_leave_fields(dict(msg, extra=1))


def test_join_trusted_is_a_boolean_and_may_be_left_out():
    """`trusted` (issue 20 item 5): false on a node's first join; an agent from before it
    sends no such field, and its joins count as trusted."""
    assert join()["trusted"] is True
    assert open_join(P.seal(KEY_HEX, join(trusted=False)))["trusted"] is False
    old = join()
    del old["trusted"]
    assert open_join(P.seal(KEY_HEX, old)) == old
    for bad in ("yes", 1, None):
        with pytest.raises(P.ProtocolError, match="trusted must be true or false"):
            open_join(P.seal(KEY_HEX, join(trusted=bad)))
    with pytest.raises(P.ProtocolError, match="join fields must be exactly"):
        open_join(P.seal(KEY_HEX, join(extra=True)))
