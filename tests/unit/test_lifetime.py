"""imagebake/lifetime.py: the launcher's TTL and idle-stop values, `extend` and the status
view through the signed calls."""

import pytest
from agent.helpers import LAUNCHER_KEY, TOKEN, Cluster, contexts, needs_keygen

from imagebake.agent import idle, ttl


def test_launcher_values_are_one_line_errors():
    from imagebake import lifetime
    from imagebake.errors import ImagebakeError

    assert lifetime.idle_stop_seconds("30m") == 1800 and lifetime.idle_stop_seconds("2h") == 7200
    assert lifetime.idle_stop_seconds(None) is None and lifetime.ttl_seconds("4h") == 14400
    for bad in ("0m", "-5m", "30", "abc", "10s", "31d", "", True, 5.5):
        with pytest.raises(ImagebakeError, match="--idle-stop") as info:
            lifetime.idle_stop_seconds(bad)
        assert "\n" not in str(info.value)
    for bad in ("0h", "-1h", "5m", "forever", True):
        with pytest.raises(ImagebakeError, match="--ttl"):
            lifetime.ttl_seconds(bad)
    # the documented floor, 1m, is the one the cluster test launches with
    assert lifetime.idle_stop_seconds("60s") == 60 and lifetime.idle_stop_seconds("1m") == 60
    with pytest.raises(ImagebakeError, match="out of range"):
        lifetime.idle_stop_seconds("59s")


class _Target:
    def __init__(self, port):
        self.port = port

    def agent_endpoint(self, record):
        return ("127.0.0.1", self.port) if self.port else None


@pytest.fixture
def one_node_cluster(tmp_path):
    c = Cluster(contexts(tmp_path), expected=1)
    yield c
    c.master.stop()


@needs_keygen
def test_launcher_extend_and_status_view_through_the_signed_calls(one_node_cluster, monkeypatch,
                                                                   tmp_path):
    from imagebake import lifetime
    from imagebake.errors import ImagebakeError

    monkeypatch.setenv("IMAGEBAKE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(lifetime.time, "time", lambda: float(one_node_cluster.mctx.now()))
    master = one_node_cluster.start_master()
    record = {"name": "demo", "target": "docker", "token": TOKEN,
              "launcher_key": LAUNCHER_KEY, "nodes": []}
    text = lifetime.extend(_Target(one_node_cluster.port), record, "2h")
    assert "power-off at" in text and "was none" in text
    assert record["ttl_deadline"] == one_node_cluster.mctx.now() + 7200
    assert ttl.deadline(one_node_cluster.mctx, master.spec) == record["ttl_deadline"]
    life = lifetime.view(_Target(one_node_cluster.port), record, {"master": {"state": "running"}})
    assert life["source"] == "master agent" and life["ttl_moved"] is True
    lines = lifetime.render(life)
    assert "(moved by extend)" in lines[0] and "no idle stop" in lines[1]
    with pytest.raises(ImagebakeError, match="403"):  # a launcher with the wrong token
        lifetime.extend(_Target(one_node_cluster.port), dict(record, launcher_key="ee" * 32), "2h")
    with pytest.raises(ImagebakeError, match="not running"):
        lifetime.extend(_Target(None), record, "2h")
    down = lifetime.view(_Target(None), record, {"master": {"state": "exited"}})
    assert down["stopped"] == "the master is exited"
    assert any("STOPPED" in line for line in lifetime.render(down))


T0 = 1700000000


def test_render_shows_the_idle_state():
    from imagebake import lifetime

    watch = idle.IdleWatch(1800, T0)
    watch.observe(T0 + 100, [(T0 + 50, "ready", "wc@1")])
    life = {"now": T0 + 200, "ttl_deadline": T0 + 14400, "idle_stop": 1800,
            "idle": watch.view(T0 + 200), "stopping": None}
    text = "\n".join(lifetime.render(life))
    assert "stop after 30m 0s without a job" in text and "last job wc@1" in text
    assert "stop at 2023-11-14" in text


def test_render_escapes_what_the_master_and_disco_said():
    from imagebake import lifetime

    life = {"now": T0, "ttl_deadline": T0 + 60, "idle_stop": 1800,
            "idle": {"last_job": {"name": "wc\x1b]0;pwned\x07@1", "status": "ready\r",
                                  "start": T0 - 5},
                     "running_jobs": [], "idle_for": 5, "stop_at": T0 + 1795,
                     "disco": "up\x1b[2J"},
            "stopping": "ttl\x9b", "told": ["node01\x1b[1m"]}
    text = "\n".join(lifetime.render(life))
    assert [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f] == []
    assert "last job wc\\x1b]0;pwned\\x07@1 (ready\\r" in text
