import json

import pytest

from imagebake.agent import protocol as P

TOKEN = "11" * 32
OTHER = "22" * 32
NOW = 1700000000
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG0ynmU5n5vG9g3bq3o8cIYdCm0k9Ox4xwQkA0n4sJ8v"


def join(**over):
    msg = P.make_join("demo", NOW, "node01", ["10.0.0.11"], 4, KEY + " disco@node01", KEY)
    msg.update(over)
    return msg


def open_join(body, now=NOW, replay=None, cluster="demo", token=TOKEN):
    msg = P.open_envelope(token, body, cluster, now, "join", replay)
    return P.check_join_fields(msg)


def test_canonical_encoding_is_sorted_compact_ascii():
    assert P.canonical({"b": 1, "a": [1, "é"]}) == b'{"a":[1,"\\u00e9"],"b":1}'
    assert P.canonical({"a": 1, "b": 2}) == P.canonical({"b": 2, "a": 1})


def test_mac_is_hmac_sha256_over_canonical_json_with_hex_decoded_token():
    import hashlib
    import hmac
    msg = {"x": 1}
    expected = hmac.new(bytes.fromhex(TOKEN), b'{"x":1}', hashlib.sha256).hexdigest()
    assert P.mac(TOKEN, msg) == expected


def test_good_join_verifies():
    msg = join()
    assert open_join(P.seal(TOKEN, msg)) == msg


def test_forged_mac():
    body = json.loads(P.seal(TOKEN, join()).decode())
    body["mac"] = "0" * 64
    with pytest.raises(P.ProtocolError, match="bad mac"):
        open_join(json.dumps(body).encode())


def test_wrong_token():
    with pytest.raises(P.ProtocolError, match="bad mac"):
        open_join(P.seal(OTHER, join()))


def test_tampered_field():
    body = json.loads(P.seal(TOKEN, join()).decode())
    body["msg"]["hostname"] = "evil"
    with pytest.raises(P.ProtocolError, match="bad mac"):
        open_join(json.dumps(body).encode())


def test_replayed_nonce():
    cache = P.ReplayCache()
    body = P.seal(TOKEN, join())
    open_join(body, replay=cache)
    with pytest.raises(P.ProtocolError, match="replayed"):
        open_join(body, replay=cache)


def test_forged_message_does_not_poison_replay_cache():
    cache = P.ReplayCache()
    msg = join()
    with pytest.raises(P.ProtocolError):
        open_join(P.seal(OTHER, msg), replay=cache)
    assert open_join(P.seal(TOKEN, msg), replay=cache) == msg


@pytest.mark.parametrize("delta", [-121, 121, -100000])
def test_ts_outside_window(delta):
    with pytest.raises(P.ProtocolError, match="window"):
        open_join(P.seal(TOKEN, join()), now=NOW + delta)


@pytest.mark.parametrize("delta", [-120, 0, 120])
def test_ts_inside_window(delta):
    open_join(P.seal(TOKEN, join()), now=NOW + delta)


def test_wrong_cluster():
    with pytest.raises(P.ProtocolError, match="cluster"):
        open_join(P.seal(TOKEN, join(cluster="other")))


def test_wrong_type():
    with pytest.raises(P.ProtocolError, match="type"):
        open_join(P.seal(TOKEN, join(type="welcome")))


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
    {"disco_pubkey": KEY + "\nssh-ed25519 AAAAinjected"},
    {"host_pubkey": KEY + " \r"},
    {"host_pubkey": 'command="sh" ' + KEY},
    {"extra": 1},
    {"nonce": "short"},
])
def test_malformed_join_fields(over):
    with pytest.raises(P.ProtocolError):
        open_join(P.seal(TOKEN, join(**over)))


def test_garbage_bodies():
    for body in (b"", b"{", b"[]", b'{"msg": {}}', b'{"msg": 1, "mac": "x"}',
                 b"x" * (P.MAX_BODY + 1)):
        with pytest.raises(P.ProtocolError):
            open_join(body)


def test_welcome_checks_in_reply_to():
    req = join()
    welcome = P.make_welcome("demo", NOW, req["nonce"], "master", ["10.0.0.5"],
                             KEY + " disco@master", KEY, [["master", "10.0.0.5"]])
    msg = P.open_envelope(TOKEN, P.seal(TOKEN, welcome), "demo", NOW, "welcome")
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
