"""imagebake/report.py: `invoke status` text. Node names, agent fields and Disco's view
come from the cluster: shown, never obeyed by the terminal, and never a line of their own."""

from __future__ import annotations

from imagebake.report import render_status

ESC = "\x1b]0;pwned\x07\x1b[2J"


def _report() -> dict:
    return {"name": "demo", "target": "aws", "ready": False,
            "master": {"address": "10.0.0.1" + ESC, "state": "running\r",
                       "agent": {"disco": "up" + ESC, "interrupted": {"ghost\x1b[1m": "soon\x07"},
                                 "master_notice": "bye\x9b"}},
            "disco": {"installed": True, "state": "ok\x7f"},
            "nodes": [{"hostname": "node01" + ESC + "\ncluster demo (aws): READY",
                       "address": "10.0.0.2", "state": "running", "joined": True,
                       "workers": 4, "disco": {"connected": True, "max_workers": "4\x1b[8m"}}],
            "missing": ["node02\x1b[1m"], "warnings": ["w\x1b[1m"]}


def test_status_text_has_no_control_characters_from_the_cluster():
    text = render_status(_report())
    assert [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f] == []
    assert "node01\\x1b]0;pwned\\x07\\x1b[2J" in text  # shown as visible text


def test_a_node_name_cannot_forge_a_status_line():
    lines = render_status(_report()).splitlines()
    assert [ln for ln in lines if ln.startswith("cluster ")] == [
        "cluster demo (aws): NOT READY"]
