"""The CLI parses what the README shows (no cluster needed: the record lookup answers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INVOKE = Path(sys.executable).with_name("invoke")


def invoke(tmp_path, *args):
    env = {**os.environ, "IMAGEBAKE_STATE_DIR": str(tmp_path)}
    return subprocess.run([str(INVOKE), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("args", [
    ["ssh", "--name", "demo", "node02"],
    ["ssh", "--name", "demo", "node02", "uptime"],
    ["ssh", "node02", "--name", "demo"],
    ["ssh", "--name", "demo", "--node", "node02"],
    ["ssh", "--name", "demo"],
])
def test_ssh_takes_the_node_as_an_argument(tmp_path, args):
    proc = invoke(tmp_path, *args)
    # parsed: the error is about the missing cluster, not about the arguments
    assert proc.returncode == 2, proc.stderr
    assert "no cluster named 'demo'" in proc.stderr, proc.stderr


def test_launch_flags_are_the_declared_settings_each_with_its_help():
    # a launch flag is declared once (imagebake.settings.SETTINGS): the task's parameters,
    # its --help and the config keys all come from that one table
    import importlib.util

    from imagebake import settings

    spec = importlib.util.spec_from_file_location("tasks_under_test", ROOT / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    arguments = tasks.launch.get_arguments()  # invoke hands each help out once
    params = {a.name for a in arguments}
    declared = {k for k, s in settings.SETTINGS.items() if "launch" in s.commands}
    assert params - {"dry_run"} == declared
    for arg in arguments:
        assert arg.help, arg.name
        if arg.name != "dry_run":
            assert arg.help == settings.SETTINGS[arg.name].help


def _tasks_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tasks_under_test", ROOT / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    return tasks


def _controls(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f]


def test_an_error_carrying_a_nodes_text_reaches_the_terminal_escaped(capsys):
    # errors quote what the cluster answered (Disco refusals, agent replies, remote stderr)
    from invoke import Context, Exit

    from imagebake.errors import ImagebakeError

    tasks = _tasks_module()

    @tasks._cli
    def body(c):
        raise ImagebakeError("Disco refused /ddfs: HTTP 500 \x1b]0;pwned\x07\x1b[2J")

    with pytest.raises(Exit):
        body(Context())
    err = capsys.readouterr().err
    assert _controls(err) == [] and "500 \\x1b]0;pwned\\x07" in err


def test_text_commands_print_what_the_cluster_said_escaped(capsys, monkeypatch):
    from invoke import Context

    from imagebake.disco import job_submit

    tasks = _tasks_module()
    monkeypatch.setattr(tasks, "_record", lambda name, target=None: {"name": "demo"})
    monkeypatch.setattr(job_submit, "job_list",
                        lambda record: [(0, "ready", "Job@1\x1b]0;pwned\x07")])
    monkeypatch.setattr(job_submit, "logs", lambda record, name: "t node01 \x1b[2Jgone")
    tasks.job_list(Context())
    tasks.job_logs(Context(), job="Job@1:x")
    out = capsys.readouterr().out
    assert _controls(out) == [] and "Job@1\\x1b]0;pwned\\x07" in out and "\\x1b[2Jgone" in out
