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
