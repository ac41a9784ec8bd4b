"""spec.py: a spec is made with fresh secrets, validated whole (one-line SpecError) and
read back unchanged."""

import json
import re

import pytest

from imagebake.agent import spec
from imagebake.agent import spec as S
from imagebake.agent.spec import SpecError, dumps, loads, make_spec

from .helpers import COOKIE, TOKEN


def test_make_spec_defaults_and_roundtrip():
    spec = S.make_spec("demo", "node", master_address="10.0.0.5", expected_nodes=3)
    assert spec["version"] == 1
    assert spec["master"] == {"address": "10.0.0.5", "name": "master", "join_port": 8990}
    assert spec["erlang_ports"] == [30000, 30063]
    assert len(spec["token"]) == 64 and int(spec["token"], 16) >= 0
    assert len(spec["cookie"]) == 32 and spec["cookie"].isalnum() and spec["cookie"].isupper() \
        or spec["cookie"].isdigit()
    text = S.dumps(spec)
    assert len(text) < 2048
    assert S.loads(text) == spec
    assert text == json.dumps(spec, sort_keys=True, separators=(",", ":"))
    assert " " not in text


def test_secrets_are_distinct_each_time():
    tokens = set(S.new_token() for _ in range(50))
    cookies = set(S.new_cookie() for _ in range(50))
    assert len(tokens) == 50 and len(cookies) == 50
    for cookie in cookies:
        assert len(cookie) == 32 and all(c in S.COOKIE_ALPHABET for c in cookie)
    a = S.make_spec("x", "master")
    b = S.make_spec("x", "master")
    assert a["token"] != b["token"] and a["cookie"] != b["cookie"]


def test_given_secrets_are_kept():
    spec = S.make_spec("x", "master", token="ab" * 32, cookie="A" * 32)
    assert spec["token"] == "ab" * 32 and spec["cookie"] == "A" * 32


@pytest.mark.parametrize("name", ["", "UPPER", "a_b", "-ab", "ab-", "a" * 41, "a.b", 7, None])
def test_bad_cluster_names(name):
    with pytest.raises(S.SpecError):
        S.make_spec(name, "master")


@pytest.mark.parametrize("name", ["a", "a" * 40, "disco-1", "0abc"])
def test_good_cluster_names(name):
    assert S.make_spec(name, "master")["cluster"] == name


@pytest.mark.parametrize("kwargs", [
    {"role": "worker"},
    {"role": "node"},  # no master address
    {"disco_port": 0},
    {"disco_port": 70000},
    {"disco_port": "8989"},
    {"join_port": True},
    {"erlang_ports": (30063, 30000)},
    {"erlang_ports": (80, 90)},
    {"erlang_ports": (30000,)},
    {"workers": 0},
    {"workers": "4"},
    {"master_workers": -1},
    {"expected_nodes": 1.5},
    {"ttl_deadline": "tomorrow"},
    {"token": "zz" * 32},
    {"token": "ab"},
    {"cookie": "lowercase" * 4},
    {"hostname": "node01.example.com"},
    {"hostname": "10.0.0.1"},
    {"master_address": "bad address"},
    {"join_port": 8989},  # same as disco_port
])
def test_bad_specs_raise_one_line(kwargs):
    args = {"cluster": "c", "role": "master"}
    args.update(kwargs)
    with pytest.raises(S.SpecError) as info:
        S.make_spec(**args)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_workers_none_means_cores_and_hostname_optional():
    spec = S.make_spec("c", "node", master_address="master.internal", workers=None,
                       hostname="node01")
    assert spec["workers"] is None and spec["hostname"] == "node01"


def test_loads_rejects_garbage_and_unknown_fields():
    with pytest.raises(S.SpecError):
        S.loads("not json")
    with pytest.raises(S.SpecError):
        S.loads(b"\xff\xfe")
    spec = S.make_spec("c", "master")
    spec["extra"] = 1
    with pytest.raises(S.SpecError):
        S.loads(json.dumps(spec))
    with pytest.raises(S.SpecError):
        S.loads("[]")


def test_spec_size_limit():
    spec = S.make_spec("c" * 40, "node", master_address="a" * 60 + ".example.com",
                       hostname="n" * 63, workers=64, master_workers=64, expected_nodes=999,
                       ttl_deadline=4102444800)
    assert len(S.dumps(spec)) < 1024


@pytest.mark.parametrize("field,value", [
    ("cluster", "evil\n"), ("hostname", "evil\n"), ("token", "ab" * 32 + "\n"),
    ("cookie", COOKIE + "\n"),
])
def test_spec_refuses_a_trailing_newline(field, value):
    good = spec.make_spec("demo", "node", master_address="10.0.0.5", token=TOKEN,
                          cookie=COOKIE, hostname="node01")
    spec.validate_spec(good)
    with pytest.raises(spec.SpecError):
        spec.validate_spec(dict(good, **{field: value}))
    with pytest.raises(spec.SpecError):
        spec.validate_spec(dict(good, master=dict(good["master"], address="10.0.0.5\n")))
    with pytest.raises(spec.SpecError):
        spec.validate_spec(dict(good, master=dict(good["master"], name="master\n")))


def test_spec_idle_stop_is_optional_and_positive():
    plain = make_spec("demo", "master")
    assert "idle_stop" not in plain and "idle_stop" not in dumps(plain)  # old agents read it
    assert loads(dumps(make_spec("demo", "master", idle_stop=1800)))["idle_stop"] == 1800
    for bad in (0, -60, "30m", True, 1.5, None):
        with pytest.raises(SpecError, match="idle_stop"):
            make_spec("demo", "master", idle_stop=bad) if bad is not None else loads(
                dumps(plain)[:-1] + ',"idle_stop":null}')


def test_only_the_masters_spec_carries_the_launcher_key():
    master = make_spec("demo", "master")
    assert re.fullmatch("[0-9a-f]{64}", master["launcher_key"])
    assert master["launcher_key"] not in (master["token"], make_spec("demo", "master")[
        "launcher_key"])
    node = make_spec("demo", "node", master_address="10.0.0.5", token=master["token"])
    assert "launcher_key" not in node and master["launcher_key"] not in dumps(node)
    with pytest.raises(SpecError, match="launcher_key"):
        make_spec("demo", "node", master_address="10.0.0.5",
                  launcher_key=master["launcher_key"])
    with pytest.raises(SpecError, match="launcher_key"):
        loads(dumps(dict(node, launcher_key=master["launcher_key"]), check=False))
    with pytest.raises(SpecError, match="launcher_key"):
        loads(dumps(dict(master, launcher_key="ab" * 31), check=False))
    assert loads(dumps(master)) == master
