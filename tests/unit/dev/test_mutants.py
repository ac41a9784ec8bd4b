"""imagebake/dev/mutants.py stays in step with the code: every mutant still applies (its text
occurs exactly once), changes something, and names tests that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagebake.dev import mutants

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda m: m.name)
def test_mutant_applies_once_and_changes_the_source(mutant, tmp_path):
    source = ROOT / mutant.path
    copy = tmp_path / mutant.path
    copy.parent.mkdir(parents=True)
    copy.write_text(source.read_text())
    original = mutant.apply(tmp_path)
    assert original == source.read_text() and copy.read_text() != original
    if mutant.path.endswith(".py"):
        compile(copy.read_text(), str(copy), "exec")  # a mutant is valid Python
    for test in mutant.tests:
        assert (ROOT / test.split("::")[0]).is_file(), test


def test_names_are_unique_and_every_claim_is_covered():
    names = [m.name for m in mutants.MUTANTS]
    assert len(names) == len(set(names))
    wanted = {"bake-always-rebakes", "hash-no-variables", "ami-lookup-ignores-content-hash",
              "cleanup-removes-nothing", "master-trusts-unsigned-join",
              "node-trusts-unsigned-welcome", "launcher-trusts-unsigned-status",
              "one-runinstances-per-slave", "destroy-leaves-known-hosts",
              "destroy-no-placement-search", "zip-member-outside-accepted"}
    assert wanted <= set(names)
