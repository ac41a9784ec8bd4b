"""vendor/disco.lock: well-formed pins, and vendor/refresh.sh's check of archives against it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "vendor" / "disco.lock"
ARCHIVES = ROOT / "vendor" / "disco"
REFRESH = ROOT / "vendor" / "refresh.sh"
LICENCES = {"BSD-3-Clause", "Apache-2.0", "MIT", "ISC"}
BASES = {"disco", "any", "otp21+", "otp<21"}


def rows() -> list[list[str]]:
    return [line.split() for line in LOCK.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_lock_rows_are_well_formed() -> None:
    seen = set()
    for row in rows():
        assert len(row) == 7, row
        name, ref, bases, commit, sha, licence, repo = row
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), row
        assert re.fullmatch(r"[A-Za-z0-9._-]+", ref), row
        assert bases in BASES, row
        assert re.fullmatch(r"[0-9a-f]{40}", commit), row
        assert re.fullmatch(r"[0-9a-f]{64}", sha), row
        assert licence in LICENCES, row
        assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+\.git", repo), row
        assert (name, ref) not in seen, f"{name} {ref} twice"
        seen.add((name, ref))
    assert ("disco", "0.5.4") in seen and ("disco", "develop") in seen


def test_each_base_has_one_version_of_each_dep() -> None:
    for base in ("otp21+", "otp<21"):
        names = [r[0] for r in rows() if r[2] in ("any", base)]
        assert len(names) == len(set(names)), f"{base}: a dependency twice"


def _archive(row: list[str]) -> Path:
    return ARCHIVES / f"{row[0]}-{row[1]}.tar.gz"


@pytest.mark.skipif(not ARCHIVES.is_dir() or not any(ARCHIVES.glob("*.tar.gz")),
                    reason="archives not made here (vendor/refresh.sh make)")
def test_archives_match_lock_and_have_one_top_dir() -> None:
    for row in rows():
        path = _archive(row)
        assert path.is_file(), f"missing {path}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row[4], path
        with tarfile.open(path) as tar:
            tops = {m.name.split("/")[0] for m in tar.getmembers() if m.name != "pax_global_header"}
            assert tops == {row[0]}, path
            # git archive records the commit in the pax header: the exact upstream commit
            assert tar.pax_headers.get("comment") == row[3], path


def _refresh(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VENDOR_LOCK": str(tmp / "disco.lock"), "VENDOR_DIR": str(tmp / "disco")}
    return subprocess.run(["bash", str(REFRESH), *args], capture_output=True, text=True,
                          env=env, check=False)


def _fake_vendor(tmp: Path) -> Path:
    (tmp / "disco").mkdir()
    data = b"not really a tarball\n"
    (tmp / "disco" / "plists-master.tar.gz").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    (tmp / "disco.lock").write_text(
        "# name ref bases commit sha256 licence repository\n"
        f"plists master any {'a' * 40} {sha} MIT https://github.com/discoproject/plists.git\n")
    return tmp / "disco" / "plists-master.tar.gz"


def test_refresh_check_passes_on_match(tmp_path: Path) -> None:
    _fake_vendor(tmp_path)
    res = _refresh(tmp_path, "check")
    assert res.returncode == 0, res.stderr
    assert "all 1 archives match" in res.stderr


def test_refresh_check_names_mismatched_file(tmp_path: Path) -> None:
    archive = _fake_vendor(tmp_path)
    archive.write_bytes(b"tampered\n")
    res = _refresh(tmp_path, "check")
    assert res.returncode == 2
    assert "checksum mismatch" in res.stderr and str(archive) in res.stderr


def test_refresh_check_names_missing_file(tmp_path: Path) -> None:
    archive = _fake_vendor(tmp_path)
    archive.unlink()
    res = _refresh(tmp_path, "check")
    assert res.returncode == 2
    assert f"missing {archive}" in res.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_refresh_make_is_reproducible_and_pin_writes_sha(tmp_path: Path) -> None:
    """A local upstream repo: make twice gives the same bytes; pin writes their sha256."""
    up = tmp_path / "up"
    up.mkdir()
    git = ["git", "-C", str(up), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(up)], check=True)
    (up / "README").write_text("hello\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-qm", "one", "--date=2020-01-01T00:00:00Z"], check=True,
                   env={**os.environ, "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z"})
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    mirrors = tmp_path / "mirrors" / "example+up"
    mirrors.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(up), str(mirrors / "repo")], check=True)
    work = tmp_path / "v"
    work.mkdir()
    (work / "disco.lock").write_text(
        f"up main any {commit} {'0' * 64} MIT https://github.com/example/up.git\n")
    env = {**os.environ, "VENDOR_LOCK": str(work / "disco.lock"),
           "VENDOR_DIR": str(work / "disco"), "VENDOR_GIT_DIRS": str(tmp_path / "mirrors")}
    run = ["bash", str(REFRESH)]
    subprocess.run([*run, "pin"], env=env, check=True, capture_output=True)
    first = (work / "disco" / "up-main.tar.gz").read_bytes()
    sha = hashlib.sha256(first).hexdigest()
    assert sha in (work / "disco.lock").read_text()
    (work / "disco" / "up-main.tar.gz").unlink()
    subprocess.run([*run, "make"], env=env, check=True, capture_output=True)
    assert (work / "disco" / "up-main.tar.gz").read_bytes() == first
    assert subprocess.run([*run, "check"], env=env, capture_output=True).returncode == 0


def test_refresh_make_that_cannot_reach_upstream_leaves_no_temp_lock(tmp_path: Path) -> None:
    """install.sh tries `make` offline: it fails in one line and leaves the lock's folder clean."""
    archive = _fake_vendor(tmp_path)
    archive.unlink()
    (tmp_path / "mirrors").mkdir()
    env = {**os.environ, "VENDOR_LOCK": str(tmp_path / "disco.lock"),
           "VENDOR_DIR": str(tmp_path / "disco"), "VENDOR_GIT_DIRS": str(tmp_path / "mirrors"),
           "GIT_ALLOW_PROTOCOL": "file"}  # no network: github.com is not a file:// URL
    res = subprocess.run(["bash", str(REFRESH), "make"], capture_output=True, text=True,
                         env=env, check=False)
    assert res.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disco", "disco.lock", "mirrors"]
