"""The host-side check of the vendored Disco archives (imagebake/bake/vendor.py), and the
bake's wiring of it: the default disco_source=vendored is accepted as is, and a missing or
altered archive stops the bake with one line naming the file, before Packer, nothing baked."""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from imagebake import targets
from imagebake.bake import build, vendor
from imagebake.errors import ImagebakeError
from imagebake.targets.docker import images as docker_images

DOCKER = targets.get("docker")

ROOT = Path(__file__).resolve().parents[3]
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
    monkeypatch.setattr(docker_images, "check_base", lambda v: "sha256:x")
    monkeypatch.setattr(build.packer, "packer_bin", lambda: "/bin/true")
    monkeypatch.setattr(build, "_packer_build",
                        lambda *a, **k: ran.append(a[1]) or {})
    monkeypatch.setattr(docker_images.existing, "docker_image", lambda role, digest: None)
    monkeypatch.setenv("IMAGEBAKE_IMAGES_JSON", str(tmp_path / "images.json"))
    return ran


def test_default_vendored_is_accepted_no_such_file(no_packer, monkeypatch, tmp_path):
    lock, archives = _fake_vendor(tmp_path)
    monkeypatch.setattr(vendor, "LOCK", lock)
    monkeypatch.setattr(vendor, "ARCHIVES", archives)
    monkeypatch.setattr(vendor.check, "__defaults__", (archives,))
    result = DOCKER.bake(variables={})
    assert result["built"] == ["master", "node"] and no_packer == [["master", "node"]]


def test_missing_archive_stops_the_bake_before_packer(no_packer, monkeypatch, tmp_path):
    lock, archives = _fake_vendor(tmp_path)
    (archives / "disco-0.5.4.tar.gz").unlink()
    monkeypatch.setattr(vendor, "LOCK", lock)
    monkeypatch.setattr(vendor.check, "__defaults__", (archives,))
    # disco_source=vendored given: strict whether or not this machine reaches GitHub
    # (the offline fallback for the default is tested below and in test_offline_bake).
    with pytest.raises(ImagebakeError) as exc:
        DOCKER.bake(variables={"disco_source": "vendored"})
    assert "disco-0.5.4.tar.gz" in str(exc.value) and "\n" not in str(exc.value)
    assert no_packer == []  # Packer never ran: nothing built, nothing tagged


def test_cli_missing_archive_is_one_line_exit_2_or_one_warning_offline(tmp_path):
    """`invoke bake` in a copy of the repository whose vendor/disco/ lacks the archives and
    with no git, no packer, no docker on PATH: `disco_source=vendored` stops in one line
    before Packer; the default goes on after one warning line (and then needs Packer)."""
    import subprocess
    import sys

    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "__pycache__", "*.tar.gz", "*.qcow2", "node_modules"))

    def bake(*extra):
        return subprocess.run([sys.executable, "-m", "invoke", "bake", "--target", "docker",
                               *extra], cwd=copy, capture_output=True, text=True, timeout=120,
                              env={"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path),
                                   "PYTHONPATH": str(copy)})

    strict = bake("--var", "disco_source=vendored")
    assert strict.returncode == 2, strict.stdout + strict.stderr
    lines = strict.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing archive vendor/disco/disco-0.5.4.tar.gz" in lines[0]
    assert not (copy / "build" / "images.json").exists()
    offline = bake()
    lines = offline.stderr.strip().splitlines()
    assert lines[0].startswith("warning: baking WITHOUT Disco (offline)")
    assert sum("warning" in line for line in lines) == 1
    assert "packer not found" in lines[1]  # it went on, to the next thing a bake needs


def test_the_test_bake_uses_disco_when_the_archives_are_here(monkeypatch, tmp_path, capsys):
    lock, archives = _fake_vendor(tmp_path)
    monkeypatch.setattr(vendor, "LOCK", lock)
    monkeypatch.setattr(vendor.check, "__defaults__", (archives,))
    assert vendor.local_bake_vars() == []
    (archives / "bear-0.8.1.tar.gz").unlink()
    assert vendor.local_bake_vars() == ["--var", "disco_source=none"]
    assert "bear-0.8.1.tar.gz" in capsys.readouterr().err


# ---------------------------------------------------------------- offline: no archives, no GitHub
def _missing(tmp_path, monkeypatch):
    lock, archives = _fake_vendor(tmp_path)
    (archives / "disco-0.5.4.tar.gz").unlink()
    monkeypatch.setattr(vendor, "LOCK", lock)
    monkeypatch.setattr(vendor.check, "__defaults__", (archives,))
    return lock


def _resolve(given, may_go_without, reachable=False):
    effective = {"disco_source": "vendored", "disco_ref": "0.5.4", **given}
    return vendor.resolve(effective, given, may_go_without, lambda: reachable), effective


def test_offline_local_default_goes_on_without_disco_after_one_warning(tmp_path, monkeypatch,
                                                                       capsys):
    _missing(tmp_path, monkeypatch)
    source, effective = _resolve({}, may_go_without=True)
    assert source == effective["disco_source"] == "offline"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: baking WITHOUT Disco")
    for how in ("disco-0.5.4.tar.gz", "scripts/install.sh", "vendor/refresh.sh make",
                "url.<base>.insteadOf"):
        assert how in err[0]


@pytest.mark.parametrize("given, may_go_without, reachable", [
    ({"disco_source": "vendored"}, True, False),  # asked for: today's strict error
    ({}, False, False),                            # AWS: never an AMI without Disco
    ({}, True, True),                              # GitHub answers: make the archives
])
def test_otherwise_a_missing_archive_stays_an_error(tmp_path, monkeypatch, capsys, given,
                                                   may_go_without, reachable):
    _missing(tmp_path, monkeypatch)
    with pytest.raises(ImagebakeError, match="missing archive .*disco-0.5.4.tar.gz"):
        _resolve(given, may_go_without, reachable)
    assert "warning" not in capsys.readouterr().err


def test_a_checksum_mismatch_is_never_an_offline_bake(tmp_path, monkeypatch):
    lock, archives = _fake_vendor(tmp_path)
    _tar_gz(archives / "bear-0.8.1.tar.gz", "bear", b"tampered", COMMIT)
    monkeypatch.setattr(vendor, "LOCK", lock)
    monkeypatch.setattr(vendor.check, "__defaults__", (archives,))
    with pytest.raises(ImagebakeError, match="checksum mismatch"):
        _resolve({}, may_go_without=True)


def test_the_docker_bake_goes_on_offline_and_the_aws_bake_does_not(no_packer, monkeypatch,
                                                                     tmp_path):
    _missing(tmp_path, monkeypatch)
    monkeypatch.setattr(vendor, "upstream_reachable", lambda: False)
    monkeypatch.setattr(vendor.resolve, "__defaults__", (vendor.upstream_reachable,))
    passed = []
    monkeypatch.setattr(build, "_bake", lambda kind, roles, effective, *a: passed.append(
        effective["disco_source"]) or {"built": list(roles)})
    assert DOCKER.bake(variables={})["built"] == ["master", "node"]
    assert passed == ["offline"]
    with pytest.raises(ImagebakeError, match="missing archive"):
        DOCKER.bake(variables={"disco_source": "vendored"})
    with pytest.raises(ImagebakeError, match="missing archive"):
        targets.get("aws").bake(variables={})
    assert passed == ["offline"]


def test_upstream_probe_uses_the_lock_url_and_gives_up(tmp_path, monkeypatch):
    """No network for git here (only file://): unreachable, quickly, no prompt."""
    lock, _ = _fake_vendor(tmp_path)
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    assert vendor.upstream_reachable(lock) is False
    mirror = tmp_path / "mirror"
    subprocess.run(["git", "init", "-q", str(mirror)], check=True)
    subprocess.run(["git", "-C", str(mirror), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.file://{mirror}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "https://example.invalid/disco.git")
    assert vendor.upstream_reachable(lock) is True  # a mirror through insteadOf counts
