"""imagebake/progress.py: off a terminal, long work still says what it does (a plain
line per status change where asked) and never draws a live display; on one, the rows
and the step log are drawn."""

from __future__ import annotations

import io

from rich.console import Console

from imagebake import progress


def test_a_plain_board_prints_one_line_per_change_and_nothing_else(capsys):
    with progress.Board(enabled=False, plain=True) as board:
        row = board.row("master")
        row.update(status="running", step="provision 10-packages.sh")
        row.update(status="running", step="provision 10-packages.sh")  # no change
        row.update(completed=3)  # a counter moves: no line
        row.update(status="done", finished=True)
        board.note("only shown live")
    err = capsys.readouterr().err.splitlines()
    assert err == ["[master] running: provision 10-packages.sh",
                   "[master] done: provision 10-packages.sh"]
    assert row.finished and row.status == "done"


def test_off_a_terminal_the_default_board_and_the_counter_stay_quiet(capsys):
    with progress.Board(enabled=False) as board:
        board.row("x").update(status="running", step="a")
    with progress.progress_bar("nodes joined", 4) as advance:
        advance(2)
    assert capsys.readouterr().err == ""


def test_steps_log_each_state_with_its_time_when_live(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress, "Console",
                        lambda stderr=True: Console(file=out, force_terminal=True, width=120))
    with progress.Steps("launching demo", enabled=True) as steps:
        steps.step("master pending (i-1)")
        steps.step("slaves pending (4)")
    text = out.getvalue()
    assert "s master pending (i-1)" in text and "s slaves pending (4)" in text
    assert "launching demo" in text


def test_a_step_from_the_cluster_is_shown_escaped_plain_and_live(capsys, monkeypatch):
    # steps quote what the cluster reports (Packer's build output, drain states)
    hostile = "drain \x1b]0;pwned\x07\x1b[2J\rdone"
    with progress.Board(enabled=False, plain=True) as board:
        board.row("node01").update(status="draining", step=hostile)
    assert capsys.readouterr().err.splitlines() == [
        "[node01] draining: drain \\x1b]0;pwned\\x07\\x1b[2J\\rdone"]
    out = io.StringIO()
    monkeypatch.setattr(progress, "Console",
                        lambda stderr=True: Console(file=out, force_terminal=True, width=200))
    with progress.Steps("shrinking demo", enabled=True) as steps:
        steps.step(hostile)
    assert "\x1b]0;pwned" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "drain \\x1b]0;pwned\\x07" in out.getvalue()
