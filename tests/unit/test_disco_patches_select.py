"""provision/disco/select.sh: which vendored archives and patches a base gets.

Called through bash with fake OTP/Python versions, so the rule "OTP 21+ / Python 3 patches
never reach Ubuntu 14.04 (R16B03, Python 2.7)" is checked without building anything.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SELECT = ROOT / "provision" / "disco" / "select.sh"
PATCHES = ROOT / "provision" / "disco" / "patches"
LOCK = ROOT / "vendor" / "disco.lock"
CONDITIONS = ("any", "otp21+", "py3")
# Every dependency directory Disco's Makefile installs (DEPS in its Makefile).
DISCO_DEPS = {"mochiweb", "lager", "goldrush", "folsom", "bear", "meck", "folsomite", "plists"}


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    script = f'. "{SELECT}"; "$@"'
    return subprocess.run(["bash", "-c", script, "select", *args], capture_output=True,
                          text=True, check=False)


def out(*args: str) -> list[str]:
    res = sh(*args)
    assert res.returncode == 0, res.stderr
    return res.stdout.split("\n")[:-1] if res.stdout else []


def lock_rows() -> list[list[str]]:
    rows = []
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append(line.split())
    return rows


def selected(disco_ref: str, otp: int) -> list[tuple[str, str]]:
    return [tuple(line.split()[:2]) for line in out("disco_lock_select", str(LOCK), disco_ref,
                                                    str(otp))]


def patches(otp: int, py: int, name: str, ref: str) -> list[Path]:
    return [Path(p) for p in out("disco_patches", str(PATCHES), str(otp), str(py), name, ref)]


@pytest.mark.parametrize("release, major", [("R16B03", 16), ("R16B03-1", 16), ("R15B01", 15),
                                            ("17", 17), ("21", 21), ("25", 25), ("26", 26)])
def test_otp_major(release: str, major: int) -> None:
    assert out("disco_otp_major", release) == [str(major)]


@pytest.mark.parametrize("release", ["", "RB", "abc"])
def test_otp_major_refuses_garbage(release: str) -> None:
    assert sh("disco_otp_major", release).returncode != 0


@pytest.mark.parametrize("otp, py, expected", [
    (16, 2, ["any"]), (20, 2, ["any"]), (20, 3, ["any", "py3"]), (21, 2, ["any", "otp21+"]),
    (25, 3, ["any", "otp21+", "py3"]),
])
def test_conditions(otp: int, py: int, expected: list[str]) -> None:
    assert out("disco_conditions", str(otp), str(py)) == expected


@pytest.mark.parametrize("otp, py", [("x", "3"), ("25", "4"), ("", "3")])
def test_conditions_refuse_bad_versions(otp: str, py: str) -> None:
    assert sh("disco_conditions", otp, py).returncode != 0


def test_trusty_never_gets_otp21_or_py3_patches() -> None:
    """Ubuntu 14.04: R16B03 and Python 2.7, every archive it could build, every patch dir."""
    for otp in (14, 15, 16, 17, 18, 19, 20):
        for name, ref, *_ in lock_rows():
            for p in patches(otp, 2, name, ref):
                cond = p.relative_to(PATCHES).parts[0]
                assert cond == "any", f"{p} reaches OTP {otp} / Python 2"


def test_trusty_gets_upstream_pinned_deps() -> None:
    rows = selected("0.5.4", 16)
    assert rows[0] == ("disco", "0.5.4")
    deps = dict(rows[1:])
    assert set(deps) == DISCO_DEPS
    assert deps["lager"] == "2.0.3" and deps["mochiweb"] == "v2.9.2" and deps["meck"] == "0.8.2"
    # and none of the newer ones that need OTP >= 21
    otp21 = {(r[0], r[1]) for r in lock_rows() if r[2] == "otp21+"}
    assert not otp21 & set(rows)


@pytest.mark.parametrize("ref", ["0.5.4", "develop"])
def test_modern_base_gets_new_deps_and_all_conditions(ref: str) -> None:
    rows = selected(ref, 25)
    assert rows[0] == ("disco", ref)
    deps = dict(rows[1:])
    assert set(deps) == DISCO_DEPS
    assert deps["lager"] == "2.2.3" and deps["mochiweb"] == "v2.22.0" and deps["meck"] == "0.9.2"
    conds = {p.relative_to(PATCHES).parts[0] for p in patches(25, 3, "disco", ref)}
    assert conds == set(CONDITIONS)


def test_unknown_disco_ref_fails() -> None:
    assert sh("disco_lock_select", str(LOCK), "0.4.0", "25").returncode != 0


def test_patch_order_is_condition_then_name() -> None:
    got = patches(25, 3, "disco", "0.5.4")
    keys = [(CONDITIONS.index(p.relative_to(PATCHES).parts[0]), p.name) for p in got]
    assert keys == sorted(keys) and len(got) >= 4


def test_patch_tree_layout() -> None:
    """Only known conditions; every patch dir names a locked archive; every patch has a reason."""
    locked = {f"{r[0]}-{r[1]}" for r in lock_rows()}
    found = list(PATCHES.glob("*/*/*"))
    assert found
    for cond_dir in PATCHES.iterdir():
        assert cond_dir.name in CONDITIONS, f"unknown patch condition {cond_dir.name}"
    for p in found:
        cond, tree, name = p.relative_to(PATCHES).parts
        assert tree in locked, f"{p}: no archive {tree} in vendor/disco.lock"
        assert name.endswith(".patch") and name[:4].isdigit() and name[4] == "-", p
        first = p.read_text().splitlines()[0]
        assert first.startswith("Reason: ") and len(first) > 20, f"{p}: no one-line reason"
        assert "\ndiff --git " in p.read_text(), f"{p}: not a git diff"


def test_patch_numbers_are_unique_per_directory() -> None:
    """Two patches of one directory never share a number (their order would be by the rest
    of the name, which no one chose)."""
    for tree in PATCHES.glob("*/*"):
        numbers = [p.name[:4] for p in tree.glob("*.patch")]
        assert len(numbers) == len(set(numbers)), f"{tree}: a patch number used twice"
