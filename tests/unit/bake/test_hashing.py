"""Content hash: stable across runs and machines, sensitive to every input."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imagebake.bake import hashing

ROOT = Path(__file__).resolve().parents[3]
VARS = {"disco_source": "none", "disco_ref": "0.5.4"}


@pytest.fixture
def tree(tmp_path):
    """A copy of the inputs in a temporary repository."""
    root = tmp_path / "repo"
    for folder in ("packer", "provision", "imagebake/agent"):
        shutil.copytree(ROOT / folder, root / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "base"))
    (root / "vendor").mkdir()
    shutil.copy(ROOT / "vendor" / "disco.lock", root / "vendor" / "disco.lock")
    return root


def test_same_inputs_same_hash_anywhere(tree, tmp_path):
    other = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(tree, other)
    for path in other.rglob("*"):
        os.utime(path, (1, 1))  # mtimes do not matter
    assert hashing.content_hash(tree, "docker", "master", VARS) == \
        hashing.content_hash(other, "docker", "master", VARS)


def test_hash_is_hex_sha256(tree):
    digest = hashing.content_hash(tree, "docker", "node", VARS)
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_variable_order_does_not_matter(tree):
    assert hashing.content_hash(tree, "docker", "node", {"a": "1", "b": "2"}) == \
        hashing.content_hash(tree, "docker", "node", {"b": "2", "a": "1"})


def _zero_first_sha(lock: str) -> str:
    """The lock with its first row's pinned sha256 (5th column) replaced by zeros."""
    row = next(line for line in lock.splitlines() if line.strip() and not line.startswith("#"))
    sha = row.split()[4]
    return lock.replace(sha, "0" * len(sha), 1)


@pytest.mark.parametrize("change", [
    lambda r: (r / "provision" / "40-network.sh").write_text("changed\n"),
    lambda r: (r / "packer" / "sources.pkr.hcl").write_text("changed\n"),
    lambda r: (r / "imagebake" / "agent" / "cli.py").write_text("changed\n"),
    lambda r: (r / "imagebake" / "agent" / "new_module.py").write_text("x = 1\n"),
    lambda r: (r / "provision" / "20-packages.sh").unlink(),
    # Disco's build: a patch, the selection, and the lock (an archive's pinned sha256)
    lambda r: next((r / "provision" / "disco" / "patches").rglob("*.patch")).write_text("x\n"),
    lambda r: (r / "provision" / "disco" / "select.sh").write_text("changed\n"),
    lambda r: (r / "vendor" / "disco.lock").write_text(_zero_first_sha(
        (r / "vendor" / "disco.lock").read_text())),
])
def test_any_input_change_changes_hash(tree, change):
    before = hashing.content_hash(tree, "docker", "master", VARS)
    change(tree)
    assert hashing.content_hash(tree, "docker", "master", VARS) != before


def test_non_inputs_do_not_change_hash(tree):
    before = hashing.content_hash(tree, "docker", "master", VARS)
    (tree / "imagebake" / "agent" / "__pycache__").mkdir(exist_ok=True)
    (tree / "imagebake" / "agent" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"x")
    (tree / "docs").mkdir()
    (tree / "docs" / "bake.md").write_text("docs\n")
    assert hashing.content_hash(tree, "docker", "master", VARS) == before


@pytest.mark.parametrize("target,role,variables", [
    ("aws", "master", VARS),
    ("docker", "node", VARS),
    ("docker", "master", {**VARS, "disco_ref": "0.5.3"}),
    ("docker", "master", {**VARS, "extra": "1"}),
])
def test_target_role_and_variables_change_hash(tree, target, role, variables):
    assert hashing.content_hash(tree, target, role, variables) != \
        hashing.content_hash(tree, "docker", "master", VARS)


def test_extra_file_content_counts(tree, tmp_path):
    tarball = tmp_path / "disco.tar.gz"
    tarball.write_bytes(b"one")
    first = hashing.content_hash(tree, "docker", "master", VARS, [tarball])
    tarball.write_bytes(b"two")
    assert hashing.content_hash(tree, "docker", "master", VARS, [tarball]) != first


def test_input_files_are_relative_and_sorted(tree):
    rel = [p.relative_to(tree).as_posix() for p in hashing.input_files(tree)]
    assert rel == sorted(rel)
    assert "provision/lib.sh" in rel and "packer/build.pkr.hcl" in rel
    assert "imagebake/agent/__main__.py" in rel
    assert not any(p.startswith("provision/base/") for p in rel)


def test_archives_are_hashed_through_the_lock_only(tree):
    """vendor/disco/*.tar.gz are not committed: present or not, the hash is the same (their
    sha256 is in the lock, and the bake checks them against it)."""
    before = hashing.content_hash(tree, "docker", "master", VARS)
    (tree / "vendor" / "disco").mkdir()
    (tree / "vendor" / "disco" / "disco-0.5.4.tar.gz").write_bytes(b"archive")
    (tree / "vendor" / "refresh.sh").write_text("#!/bin/sh\n")
    assert hashing.content_hash(tree, "docker", "master", VARS) == before
    rel = [p.relative_to(tree).as_posix() for p in hashing.input_files(tree)]
    assert "vendor/disco.lock" in rel and any(p.startswith("provision/disco/patches/") for p in rel)
