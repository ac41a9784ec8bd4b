"""`invoke bench` draws the README's figure itself (docs/bench-ready.png)."""

from __future__ import annotations

from pathlib import Path

from imagebake.bench import runner

ROOT = Path(__file__).resolve().parents[3]


def test_the_figure_is_the_one_the_readme_shows():
    assert runner.FIGURE == ROOT / "docs" / "bench-ready.png"
    assert "](docs/bench-ready.png)" in (ROOT / "README.md").read_text()


def test_plot_writes_a_png(tmp_path):
    curve = {str(n): {"ready_s": 0.4 + n / 10} for n in (1, 2, 4, 8, 16)}
    out = tmp_path / "ready.png"
    runner.plot(curve, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_floor_is_read_from_the_erlang_output():
    """`--what cluster`'s floor: every host's slave:start time, the total, and which
    failed; nothing when a host or the total is missing (the VM died half-way)."""
    out = ("floor node01 ok 3441\nfloor node02 error 32012\nfloor_total 32020\n")
    assert runner.parse_floor(out, ["node01", "node02"]) == {
        "floor_s": 32.02, "per_node_s": {"node01": 3.441, "node02": 32.012},
        "failed": ["node02"]}
    assert runner.parse_floor("floor node01 ok 3441\nfloor_total 3500\n",
                              ["node01", "node02"]) is None
    assert runner.parse_floor("floor node01 ok 3441\n", ["node01"]) is None


def test_the_floor_starts_every_host_the_way_disco_does():
    code = runner.FLOOR_EVAL % (runner._erl_string("erl -kernel a 1"),
                                ", ".join(runner._erl_string(h) for h in ["node01", "node02"]))
    assert 'Prog = "erl -kernel a 1", Hosts = ["node01", "node02"]' in code
    assert 'slave:start(Host, imagebake_floor, "+K true -connect_all false", Self,' in code
