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
