"""The host-side check of the vendored Disco archives (imagebake/bake/vendor.py), and the
bake's wiring of it: the default disco_source=vendored is accepted as is, and a missing or
altered archive stops the bake with one line naming the file, before Packer, nothing baked."""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from imagebake.bake import build, vendor
from imagebake.errors import ImagebakeError

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "a" * 40


def _tar_gz(path: Path, name: str, body: bytes, commit: str, level: int = 9) -> str:
    """A .tar.gz shaped like `git archive`'s (the commit in the pax header); returns the
    sha256 of its uncompressed tar stream."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": commit}) as tar:
        info = tarfile.TarInfo(f"{name}/README")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    path.write_bytes(gzip.compress(raw.getvalue(), compresslevel=level, mtime=0))
    return hashlib.sha256(raw.getvalue()).hexdigest()


def _fake_vendor(tmp: Path) -> tuple[Path, Path]:
    """A lock with Disco at two refs and two deps, and archives that match it."""
    archives = tmp / "disco"
    archives.mkdir()
    rows = []
    for name, ref, bases in (("disco", "0.5.4", "disco"), ("disco", "develop", "disco"),
                             ("lager", "2.2.3", "otp21+"), ("lager", "2.0.3", "otp<21"),
                             ("bear", "0.8.1", "any")):
        sha = _tar_gz(archives / f"{name}-{ref}.tar.gz", name, f"{name} {ref}".encode(), COMMIT)
        rows.append(f"{name} {ref} {bases} {COMMIT} {sha} MIT https://example.invalid/{name}.git")
    lock = tmp / "disco.lock"
    lock.write_text("# comment\n\n" + "\n".join(rows) + "\n")
    return lock, archives


def _check(lock: Path, archives: Path, **variables: str) -> list[vendor.Pin]:
    return vendor.check({"disco_source": str(lock), **variables}, archives)


def test_all_present_passes_and_selects_disco_ref_and_every_dep(tmp_path):
    lock, archives = _fake_vendor(tmp_path)
    pins = _check(lock, archives)
    assert [p.archive for p in pins] == ["disco-0.5.4.tar.gz", "lager-2.2.3.tar.gz",
                                         "lager-2.0.3.tar.gz", "bear-0.8.1.tar.gz"]
    assert _check(lock, archives, disco_ref="develop")[0].archive == "disco-develop.tar.gz"


def test_missing_archive_is_one_line_naming_it_and_how_to_get_it(tmp_path):
    lock, archives = _fake_vendor(tmp_path)
    (archives / "lager-2.0.3.tar.gz").unlink()
    with pytest.raises(ImagebakeError) as exc:
        _check(lock, archives)
    message = str(exc.value)
    assert "\n" not in message and "lager-2.0.3.tar.gz" in message
    assert "vendor/refresh.sh make" in message and "disco_source=none" in message


def test_altered_archive_is_a_checksum_mismatch(tmp_path):
    lock, archives = _fake_vendor(tmp_path)
    _tar_gz(archives / "bear-0.8.1.tar.gz", "bear", b"tampered", COMMIT)
    with pytest.raises(ImagebakeError, match=r"checksum mismatch .*bear-0\.8\.1\.tar\.gz"):
        _check(lock, archives)


def test_archive_of_another_commit_is_refused(tmp_path):
    lock, archives = _fake_vendor(tmp_path)
    _tar_gz(archives / "bear-0.8.1.tar.gz", "bear", b"bear 0.8.1", "b" * 40)
    with pytest.raises(ImagebakeError, match=r"commit mismatch .*bear-0\.8\.1\.tar\.gz"):
        _check(lock, archives)


def test_not_a_gzip_is_refused(tmp_path):
    lock, archives = _fake_vendor(tmp_path)
    (archives / "bear-0.8.1.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ImagebakeError, match=r"mismatch .*bear-0\.8\.1\.tar\.gz"):
        _check(lock, archives)


def test_the_pin_is_the_tar_stream_not_the_gzip_bytes(tmp_path):
    """Another compressor (git < 2.38 runs `gzip -cn`) gives other .tar.gz bytes over the
    same tar stream: still accepted."""
    lock, archives = _fake_vendor(tmp_path)
    path = archives / "bear-0.8.1.tar.gz"
    before = path.read_bytes()
    _tar_gz(path, "bear", b"bear 0.8.1", COMMIT, level=1)
    assert path.read_bytes() != before
    assert len(_check(lock, archives)) == 4


def test_unknown_disco_ref_names_the_vendored_ones(tmp_path):
    lock, archives = _fake_vendor(tmp_path)
    with pytest.raises(ImagebakeError, match="0.5.4, develop"):
        _check(lock, archives, disco_ref="0.5.9")


def test_the_unused_disco_ref_may_be_missing(tmp_path):
    lock, archives = _fake_vendor(tmp_path)
    (archives / "disco-develop.tar.gz").unlink()
    assert _check(lock, archives)[0].ref == "0.5.4"


@pytest.mark.parametrize("source", ["none", "https://github.com/discoproject/disco.git",
                                    "/tmp/disco.tar.gz"])
def test_other_sources_need_no_archive(tmp_path, source):
    assert vendor.check({"disco_source": source}, tmp_path / "nothing") == []


def test_the_real_lock_parses_with_disco_at_the_default_ref():
    pins = vendor.selected(vendor.read_lock(vendor.LOCK), "0.5.4")
    assert pins[0].name == "disco" and len({p.archive for p in pins}) == len(pins)


# ---------------------------------------------------------------- the bake's wiring
@pytest.fixture
def no_packer(monkeypatch, tmp_path):
    """bake() with Docker faked and a recorder instead of Packer."""
    ran = []
    monkeypatch.setattr(build, "_check_docker", lambda v: "sha256:x")
    monkeypatch.setattr(build.packer, "packer_bin", lambda: "/bin/true")
    monkeypatch.setattr(build, "_packer_build",
                        lambda *a, **k: ran.append(a[1]) or {})
    monkeypatch.setattr(build.existing, "docker_image", lambda role, digest: None)
    monkeypatch.setenv("IMAGEBAKE_IMAGES_JSON", str(tmp_path / "images.json"))
    return ran


def test_default_vendored_is_accepted_no_such_file(no_packer, monkeypatch, tmp_path):
    lock, archives = _fake_vendor(tmp_path)
    monkeypatch.setattr(vendor, "LOCK", lock)
    monkeypatch.setattr(vendor, "ARCHIVES", archives)
    monkeypatch.setattr(vendor.check, "__defaults__", (archives,))
    result = build.bake(target="docker", variables={})
    assert result["built"] == ["master", "node"] and no_packer == [["master", "node"]]


def test_missing_archive_stops_the_bake_before_packer(no_packer, monkeypatch, tmp_path):
    lock, archives = _fake_vendor(tmp_path)
    (archives / "disco-0.5.4.tar.gz").unlink()
    monkeypatch.setattr(vendor, "LOCK", lock)
    monkeypatch.setattr(vendor.check, "__defaults__", (archives,))
    with pytest.raises(ImagebakeError) as exc:
        build.bake(target="docker", variables={})
    assert "disco-0.5.4.tar.gz" in str(exc.value) and "\n" not in str(exc.value)
    assert no_packer == []  # Packer never ran: nothing built, nothing tagged


def test_cli_missing_archive_is_one_line_exit_2(tmp_path):
    """`invoke bake` in a copy of the repository whose vendor/disco/ lacks an archive."""
    import subprocess
    import sys

    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "__pycache__", "*.tar.gz", "*.qcow2", "node_modules"))
    proc = subprocess.run([sys.executable, "-m", "invoke", "bake", "--target", "docker"],
                          cwd=copy, capture_output=True, text=True, timeout=120,
                          # no packer, no docker on PATH: the check comes before both
                          env={"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path),
                               "PYTHONPATH": str(copy)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing archive vendor/disco/disco-0.5.4.tar.gz" in lines[0]
    assert not (copy / "build" / "images.json").exists()


def test_the_test_bake_uses_disco_when_the_archives_are_here(monkeypatch, tmp_path, capsys):
    lock, archives = _fake_vendor(tmp_path)
    monkeypatch.setattr(vendor, "LOCK", lock)
    monkeypatch.setattr(vendor.check, "__defaults__", (archives,))
    assert vendor.local_bake_vars() == []
    (archives / "bear-0.8.1.tar.gz").unlink()
    assert vendor.local_bake_vars() == ["--var", "disco_source=none"]
    assert "bear-0.8.1.tar.gz" in capsys.readouterr().err
