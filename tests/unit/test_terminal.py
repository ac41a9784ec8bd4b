"""imagebake/terminal.py: text a node, its agent or Disco produced is shown, never obeyed,
by the laptop's terminal."""

from __future__ import annotations

import json

import pytest

from imagebake.terminal import safe_fields, safe_text

# what a hostile node sends: retitle the window (OSC ... BEL), clear the screen (CSI),
# overwrite the line (CR), an 8-bit CSI (C1), DEL, NUL, a right-to-left override
HOSTILE = "ok\x1b]0;pwned\x07 \x1b[2J\rfake\x9b1m\x7f\x00\u202egnp.exe"


def _controls(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 0x20 and c not in "\t\n") or 0x7f <= ord(c) <= 0x9f
            or c == "\u202e"]


def test_control_characters_are_shown_as_visible_escapes():
    shown = safe_text(HOSTILE)
    assert _controls(shown) == []
    assert shown == ("ok\\x1b]0;pwned\\x07 \\x1b[2J\\rfake\\x9b1m\\x7f\\x00\\u202egnp.exe")


def test_tabs_and_newlines_stay_line_structure_and_crlf_is_a_newline():
    assert safe_text("a\tb\nc\r\nd\n") == "a\tb\nc\nd\n"


def test_one_line_escapes_newlines_and_tabs_too():
    # a field (a host name, a job name) cannot forge a line of its own
    assert safe_text("node01\nnode02 READY\t", one_line=True) == "node01\\nnode02 READY\\t"


@pytest.mark.parametrize("text", ["plain ascii", "naïve – ünïcode ✓ 日本", "", "a\\x1b"])
def test_printable_text_is_unchanged(text):
    assert safe_text(text) == text


def test_escaping_twice_changes_nothing_more():
    once = safe_text(HOSTILE)
    assert safe_text(once) == once


def test_fields_escapes_every_string_of_a_report_keys_included():
    report = {"nodes": [{"hostname": "n\x1b[1m", "workers": 4}], "k\x07": ("x\ny", None)}
    assert safe_fields(report) == {"nodes": [{"hostname": "n\\x1b[1m", "workers": 4}],
                                   "k\\x07": ["x\\ny", None]}


def test_json_output_escapes_controls_by_itself():
    # `--json` prints json.dumps(...) as is: it must stay free of raw control characters
    assert _controls(json.dumps({"name": HOSTILE})) == []
