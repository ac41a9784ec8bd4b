"""vendor/disco.lock: well-formed pins, and vendor/refresh.sh's check of archives against it."""

from __future__ import annotations

import gzip
import hashlib
import io
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


def _tar_sha(path: Path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


@pytest.mark.skipif(not ARCHIVES.is_dir() or not any(ARCHIVES.glob("*.tar.gz")),
                    reason="archives not made here (vendor/refresh.sh make)")
def test_archives_match_lock_and_have_one_top_dir() -> None:
    for row in rows():
        path = _archive(row)
        assert path.is_file(), f"missing {path}"
        assert _tar_sha(path) == row[4], path
        with tarfile.open(path) as tar:
            tops = {m.name.split("/")[0] for m in tar.getmembers() if m.name != "pax_global_header"}
            assert tops == {row[0]}, path
            # git archive records the commit in the pax header: the exact upstream commit
            assert tar.pax_headers.get("comment") == row[3], path


def _refresh(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VENDOR_LOCK": str(tmp / "disco.lock"), "VENDOR_DIR": str(tmp / "disco")}
    return subprocess.run(["bash", str(REFRESH), *args], capture_output=True, text=True,
                          env=env, check=False)


def _git_commit(up: Path) -> str:
    git = ["git", "-C", str(up), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(up)], check=True)
    # varied text of some size: small inputs compress alike with every gzip
    (up / "README").write_text("".join(f"hello {i * i % 7919} {i:x}\n" for i in range(20000)))
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-qm", "one", "--date=2020-01-01T00:00:00Z"], check=True,
                   env={**os.environ, "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z"})
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _fake_vendor(tmp: Path) -> Path:
    """A real `git archive` of a throw-away repository, with a lock line pinning it."""
    up = tmp / "up"
    up.mkdir()
    commit = _git_commit(up)
    (tmp / "disco").mkdir()
    archive = tmp / "disco" / "plists-master.tar.gz"
    subprocess.run(["git", "-C", str(up), "archive", "--format=tar.gz", "--prefix=plists/",
                    "-o", str(archive), commit], check=True)
    (tmp / "disco.lock").write_text(
        "# name ref bases commit sha256 licence repository\n"
        f"plists master any {commit} {_tar_sha(archive)} MIT "
        "https://github.com/discoproject/plists.git\n")
    return archive


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="no git")


@needs_git
def test_refresh_check_passes_on_match(tmp_path: Path) -> None:
    _fake_vendor(tmp_path)
    res = _refresh(tmp_path, "check")
    assert res.returncode == 0, res.stderr
    assert "all 1 archives match" in res.stderr


@needs_git
def test_refresh_check_names_mismatched_file(tmp_path: Path) -> None:
    """Same commit in the pax header, other content: the tar sha256 catches it."""
    archive = _fake_vendor(tmp_path)
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]
        pax = tar.pax_headers
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT, pax_headers=pax) as tar:
        for member, data in members:
            if data is not None:
                data = data.replace(b"hello", b"HELLO")
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    res = _refresh(tmp_path, "check")
    assert res.returncode == 2
    assert "checksum mismatch" in res.stderr and str(archive) in res.stderr


@needs_git
def test_refresh_check_names_an_archive_of_another_commit(tmp_path: Path) -> None:
    archive = _fake_vendor(tmp_path)
    lock = tmp_path / "disco.lock"
    commit = lock.read_text().split()[-4]
    lock.write_text(lock.read_text().replace(commit, "b" * 40))
    res = _refresh(tmp_path, "check")
    assert res.returncode == 2
    assert "commit mismatch" in res.stderr and str(archive) in res.stderr


@needs_git
def test_refresh_check_names_missing_file(tmp_path: Path) -> None:
    archive = _fake_vendor(tmp_path)
    archive.unlink()
    res = _refresh(tmp_path, "check")
    assert res.returncode == 2
    assert f"missing {archive}" in res.stderr


def _insteadof(url: str, mirror: Path, **extra: str) -> dict[str, str]:
    """git's own `url.<base>.insteadOf`, as an air-gapped user sets it (here through
    GIT_CONFIG_* so nothing outside the test changes)."""
    pairs = [(f"url.file://{mirror}.insteadOf", url), *extra.items()]
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


@needs_git
def test_refresh_make_from_a_mirror_is_reproducible_and_pin_writes_tar_sha(tmp_path: Path) -> None:
    """A mirror reached through insteadOf: make twice gives the same bytes; pin writes the
    sha256 of the tar stream; git < 2.38's external `gzip -cn` gives another .tar.gz that
    the same lock accepts."""
    up = tmp_path / "up"
    up.mkdir()
    commit = _git_commit(up)
    mirror = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(up), str(mirror)], check=True)
    work = tmp_path / "v"
    work.mkdir()
    url = "https://github.com/example/up.git"
    (work / "disco.lock").write_text(f"up main any {commit} {'0' * 64} MIT {url}\n")
    env = {**os.environ, "VENDOR_LOCK": str(work / "disco.lock"),
           "VENDOR_DIR": str(work / "disco"), "GIT_ALLOW_PROTOCOL": "file",
           **_insteadof(url, mirror)}
    run = ["bash", str(REFRESH)]
    subprocess.run([*run, "pin"], env=env, check=True, capture_output=True)
    archive = work / "disco" / "up-main.tar.gz"
    first = archive.read_bytes()
    assert _tar_sha(archive) in (work / "disco.lock").read_text()
    archive.unlink()
    subprocess.run([*run, "make"], env=env, check=True, capture_output=True)
    assert archive.read_bytes() == first
    assert subprocess.run([*run, "check"], env=env, capture_output=True).returncode == 0
    archive.unlink()
    old_git = {**env, **_insteadof(url, mirror, **{"tar.tar.gz.command": "gzip -cn"})}
    made = subprocess.run([*run, "make"], env=old_git, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert archive.read_bytes() != first  # other gzip bytes ...
    assert subprocess.run([*run, "check"], env=env, capture_output=True).returncode == 0  # same pin


@needs_git
def test_refresh_make_that_cannot_reach_upstream_leaves_no_temp_lock(tmp_path: Path) -> None:
    """install.sh tries `make` offline: it fails in one line and leaves the lock's folder clean."""
    archive = _fake_vendor(tmp_path)
    archive.unlink()
    env = {**os.environ, "VENDOR_LOCK": str(tmp_path / "disco.lock"),
           "VENDOR_DIR": str(tmp_path / "disco"), "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_ALLOW_PROTOCOL": "file"}  # no network: github.com is not a file:// URL
    res = subprocess.run(["bash", str(REFRESH), "make"], capture_output=True, text=True,
                         env=env, check=False)
    assert res.returncode == 2
    assert "cannot clone" in res.stderr and "insteadOf" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disco", "disco.lock", "up"]


def test_refresh_has_no_private_mirror_option() -> None:
    """Sources come from the lock's URLs through git's own config, no layout of ours."""
    assert "VENDOR_GIT_DIRS" not in REFRESH.read_text()
