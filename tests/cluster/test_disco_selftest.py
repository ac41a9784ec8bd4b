"""Disco's own test suite (its tests/, 44 modules) on the cluster the default docker bake
forms (2 slaves), through `invoke disco-selftest`: every module passes, or is skipped for
a reason outside Disco (imagebake.disco.selftest.SKIPS). Long (tens of minutes on a
shared 2-core host): each module runs alone, bounded by the selftest's per-module timeout.
The table is printed and written to build/disco-selftest.txt. Skipped when the baked
images carry no Disco."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imagebake.disco import selftest

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "build" / "disco-selftest.txt"
MODULE_TIMEOUT = 900


@pytest.fixture(scope="module")
def st(with_disco, launcher):
    return launcher("selftest", 2)


def test_disco_own_suite_passes_on_the_cluster(st):
    # test_gc and test_pipe take ~10 min each here (docs/bake.md): 900 s per module, as there
    proc = subprocess.run([sys.executable, "-m", "invoke", "disco-selftest", "--name",
                           st["name"], "--timeout", str(MODULE_TIMEOUT)],
                          capture_output=True, text=True, cwd=ROOT,
                          timeout=60 * 60 * 3)
    TABLE.parent.mkdir(exist_ok=True)
    TABLE.write_text(proc.stdout)
    print(proc.stdout)
    rows = [line for line in proc.stdout.splitlines()[1:-1] if line.strip()]
    assert len(rows) >= 44, proc.stdout + proc.stderr  # every module of Disco 0.5.4
    bad = [row for row in rows if row.split()[1] not in ("passed", "skipped")]
    assert not bad, "\n".join(bad)
    assert proc.returncode == 0, proc.stderr
    for row in rows:  # every skip says why
        if row.split()[1] == "skipped" or " skipped)" in row:
            assert "skipped:" in row or any(why[:30] in row for why in selftest.SKIPS.values()), row
