"""imagebake/disco/selftest.py (`invoke disco-selftest`): each module's result read from the
runner's JSON line, the table, the skips (only the named ones, with their reason), and the
runner's own skipping of single tests (selftest_remote.py)."""

from __future__ import annotations

import json
import subprocess
import unittest

import pytest

from imagebake.disco import selftest, selftest_remote
from imagebake.errors import ImagebakeError


def line(**fields):
    base = {"module": "test_simple", "run": 2, "failures": 0, "errors": 0, "skipped": 0,
            "detail": ""}
    return "test output\n...\n" + json.dumps({**base, **fields}) + "\n"


def test_a_module_passes_only_with_tests_run_none_failed_and_exit_0():
    assert selftest.parse_result("test_simple", 0, line(), 3.0, 300).status == "passed"
    assert selftest.parse_result("test_simple", 1, line(errors=1, detail="x: boom"), 3.0,
                                 300).status == "failed"
    assert selftest.parse_result("test_simple", 1, line(failures=1), 3.0, 300).status == "failed"
    assert selftest.parse_result("test_simple", 0, line(run=0), 3.0, 300).status == "failed"
    other = line(module="test_other")  # a JSON line of another module does not count
    assert selftest.parse_result("test_simple", 0, other, 3.0, 300).status == "failed"


def test_no_json_line_is_a_timeout_or_the_last_output_line():
    late = selftest.parse_result("test_pipe", 137, "running...\n", 300.2, 300)
    assert late.status == "timeout" and "300s" in late.detail
    broken = selftest.parse_result("test_gc", 1, "Traceback\nSyntaxError: bad\n", 1.0, 300)
    assert broken.status == "failed" and broken.detail == "SyntaxError: bad"


def test_table_has_a_row_per_module_and_a_summary():
    results = [selftest.ModuleResult("test_simple", "passed", 12.0, run=2),
               selftest.ModuleResult("test_examples", "passed", 5.0, run=5, skipped=4,
                                     detail="skipped: needs the outside network"),
               selftest.ModuleResult("test_sort", "timeout", 300.0, detail="no end within 300s")]
    text = selftest.table(results).splitlines()
    assert text[0].split() == ["module", "result", "seconds", "note"]
    assert text[1].split() == ["test_simple", "passed", "(2/2)", "12.0"]
    assert "(1/5, 4 skipped)" in text[2] and "outside network" in text[2]
    assert text[3].split()[:3] == ["test_sort", "timeout", "300.0"]
    assert text[-1] == "2 passed, 0 skipped, 1 failed of 3 modules"


@pytest.mark.parametrize("bad", ["0", "9", "3601", "ten", "1.5"])
def test_timeout_must_be_whole_seconds_in_range(bad):
    with pytest.raises(ImagebakeError, match="--timeout"):
        selftest.parse_timeout(bad)


def test_timeout_default_and_value():
    assert selftest.parse_timeout(None) == selftest.MODULE_TIMEOUT
    assert selftest.parse_timeout("120") == 120


class FakeTarget:
    """Records commands; answers like a master with Disco and its tests/."""

    def __init__(self, disco=True, modules=("test_ddfs.py", "test_simple.py")):
        self.commands, self.disco, self.modules = [], disco, modules

    def exec(self, record, command, user="root", stdin=None):
        self.commands.append(command)
        if command == "command -v disco":
            return (0, "/usr/bin/disco") if self.disco else (1, "")
        if command.startswith("test -d"):
            return 0, "\n".join([*self.modules, "testcases.py", "__init__.py"])
        if "python3" in command:
            module = command.split("runner.py ")[1].split()[0]
            return 0, line(module=module)
        return 0, ""


def test_only_the_named_tests_are_skipped_and_with_their_reason(monkeypatch):
    target = FakeTarget()
    monkeypatch.setattr("imagebake.targets.get", lambda name: target)
    results = selftest.selftest({"name": "c", "target": "docker"})
    assert [r.module for r in results] == ["test_ddfs", "test_simple"]
    ddfs, simple = [c for c in target.commands if "python3" in c]
    assert "'test_ddfs.DDFSWriteTestCase.test_chunk=needs the outside network" in ddfs
    assert "=" not in simple.split("runner.py")[1]  # nothing skipped in test_simple
    # a module by name or a single test by its id, each with its reason
    assert all(key.count(".") in (0, 2) and why for key, why in selftest.SKIPS.items())


def test_the_50k_test_is_skipped_for_host_size_unless_its_module_is_named(monkeypatch):
    target = FakeTarget(modules=("test_50k.py", "test_simple.py"))
    monkeypatch.setattr("imagebake.targets.get", lambda name: target)
    selftest.selftest({"name": "c", "target": "docker"})  # the whole suite
    whole = next(c for c in target.commands if "runner.py test_50k" in c)
    assert "'test_50k.ManyMapTestCase.test_50k=host size: 50,000 map tasks" in whole
    assert "CPU-s per task" in whole  # the reason carries its figures
    assert all(len(why) <= 300 for why in selftest.ON_REQUEST.values())  # the runner's cut
    target.commands.clear()
    selftest.selftest({"name": "c", "target": "docker"}, ["test_50k"])  # asked for by name
    named = next(c for c in target.commands if "runner.py test_50k" in c)
    assert "=" not in named.split("runner.py")[1]


def test_the_targets_own_wait_ending_first_is_a_timeout_row_and_its_jobs_are_killed(
        monkeypatch):
    class SlowTarget(FakeTarget):
        def exec(self, record, command, user="root", stdin=None):
            if "runner.py test_50k" in command:
                self.commands.append(command)
                raise subprocess.TimeoutExpired(command, 3600)
            return super().exec(record, command, user, stdin)

    target = SlowTarget(modules=("test_50k.py", "test_simple.py"))
    monkeypatch.setattr("imagebake.targets.get", lambda name: target)
    results = selftest.selftest({"name": "c", "target": "docker"}, None, 3600)
    assert [(r.module, r.status) for r in results] == [("test_50k", "timeout"),
                                                        ("test_simple", "passed")]
    assert results[0].detail == "no end within 3600s"
    assert any("disco kill" in c for c in target.commands)


def test_a_skipped_module_is_not_run(monkeypatch):
    target = FakeTarget(modules=("test_external.py", "test_simple.py"))
    monkeypatch.setattr("imagebake.targets.get", lambda name: target)
    results = selftest.selftest({"name": "c", "target": "docker"})
    assert [(r.module, r.status) for r in results] == [("test_external", "skipped"),
                                                        ("test_simple", "passed")]
    assert "gcc" in results[0].detail
    assert not any("runner.py test_external" in c for c in target.commands)


def test_no_disco_or_unknown_module_is_one_line(monkeypatch):
    monkeypatch.setattr("imagebake.targets.get", lambda name: FakeTarget(disco=False))
    with pytest.raises(ImagebakeError, match="no Disco in the images"):
        selftest.selftest({"name": "c", "target": "docker"})
    monkeypatch.setattr("imagebake.targets.get", lambda name: FakeTarget())
    with pytest.raises(ImagebakeError, match="no module 'test_nope'"):
        selftest.selftest({"name": "c", "target": "docker"}, ["test_nope"])


def test_the_runner_skips_a_test_by_id_with_the_reason():
    class Case(unittest.TestCase):
        def test_network(self):
            raise AssertionError("would need the network")

        def test_local(self):
            pass

    suite = unittest.defaultTestLoader.loadTestsFromTestCase(Case)
    network = next(t for t in selftest_remote.tests_of(suite) if "network" in t.id())
    selftest_remote.skip_named(suite, {network.id(): "needs the outside network"})
    outcome = unittest.TestResult()
    suite.run(outcome)
    assert outcome.testsRun == 2 and not outcome.failures and not outcome.errors
    assert [reason for _, reason in outcome.skipped] == ["needs the outside network"]
