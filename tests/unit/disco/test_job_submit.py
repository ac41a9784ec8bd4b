"""`invoke job` end to end on loopback: the laptop half (imagebake.disco.job_submit) sends
the script to the real runner (job_runner.py under `sh -c`, as the target's exec channel
runs it on the master), with a stand-in `disco` package whose Job.run "submits" a job that
a fake Disco API (jobinfo) reports as ready or dead."""

from __future__ import annotations

import http.server
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from imagebake import state
from imagebake.disco import job_submit
from imagebake.errors import ImagebakeError

FAKE_DISCO = {
    "disco/__init__.py": "",
    "disco/job.py": """
        import os
        class Job(object):
            def run(self, **kw):
                self.name = "Job@1:" + kw.get("input", ["x"])[0]
                return self
        """,
    "disco/core.py": """
        from disco.job import Job
        def result_iterator(results):
            return iter(results)
        """,
}

SCRIPT = """
import sys
from disco.core import Job
import helper
job = Job().run(input=[sys.argv[1]])
print("out", helper.VALUE, sys.argv[1:])
if sys.argv[1] == "boom":
    raise RuntimeError("the script failed after submitting")
"""


class FakeAPI(http.server.ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), APIHandler)
        self.states: dict[str, str] = {}


class APIHandler(http.server.BaseHTTPRequestHandler):
    server: FakeAPI

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        name = self.path.partition("name=")[2]
        state = self.server.states.get(name.split(":", 1)[1], "ready")
        body = json.dumps({"active": state, "pipeline": [["map", 0, 0, 0, 2, 0],
                                                         ["reduce", 0, 0, 0, 1, 0]]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LocalTarget:
    def __init__(self):
        self.calls: list[str] = []

    def exec(self, record, command, user="root", stdin=None):
        self.calls.append(command)
        if command.startswith("disco events"):
            return 0, json.dumps(["t", "master", "map:0 assigned to node01"]) + "\n" + \
                json.dumps(["t", "master", "FATAL: [map:0] Traceback:\nValueError: bad map"]) + "\n"
        return 0, ""

    def exec_argv(self, record, command, user="root"):
        return ["sh", "-c", command]


RECORD = {"name": "c", "target": "local", "nodes": [state.node("node01")]}


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    for rel, text in FAKE_DISCO.items():
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        (lib / rel).write_text(textwrap.dedent(text))
    api = FakeAPI()
    threading.Thread(target=api.serve_forever, daemon=True).start()
    monkeypatch.setenv("PYTHONPATH", str(lib))
    monkeypatch.setenv("DISCO_PORT", str(api.server_port))
    target = LocalTarget()
    monkeypatch.setattr("imagebake.targets.get", lambda name: target)
    job = tmp_path / "job"
    (job / "mods").mkdir(parents=True)
    (job / "mods" / "helper.py").write_text("VALUE = 42\n")
    (job / "run.py").write_text(SCRIPT)
    api.target, api.job = target, job
    yield api
    api.shutdown()
    api.server_close()


def _run(cluster, *args, **kw):
    out, err = io.StringIO(), io.StringIO()
    result = job_submit.run(RECORD, str(cluster.job / "run.py"), list(args),
                            [str(cluster.job / "mods")], out=out, err=err, **kw)
    return result, out.getvalue(), err.getvalue()


def _leftovers() -> list[str]:
    return [p for p in os.listdir("/tmp") if p.startswith("imagebake-job.")]


def test_a_job_that_disco_says_is_ready_exits_0_with_its_output_and_stages(cluster):
    before = _leftovers()
    result, out, err = _run(cluster, "data1", "--x")
    assert result == "job Job@1:data1 done"
    assert "out 42 ['data1', '--x']" in out  # the --with module was importable
    assert "job Job@1:data1 submitted" in err and "ready: map 2/2, reduce 1/1" in err
    assert _leftovers() == before  # the directory on the "master" is gone


def test_a_job_disco_reports_dead_is_exit_1_with_the_reason_from_its_events(cluster):
    cluster.states["bad"] = "dead"
    with pytest.raises(job_submit.JobFailed) as err:
        _run(cluster, "bad")
    assert err.value.exit_code == 1
    assert str(err.value) == "job Job@1:bad failed: map:0 on node01: ValueError: bad map"


def test_a_script_that_raises_is_exit_1(cluster):
    cluster.states["boom"] = "ready"
    with pytest.raises(job_submit.JobFailed) as err:
        _run(cluster, "boom")
    assert "\n" not in str(err.value) and "Job@1:boom" in str(err.value)
    assert str(err.value).endswith("RuntimeError: the script failed after submitting")


def test_detach_returns_the_name_at_once(cluster):
    cluster.states["long"] = "active"
    result, out, _ = _run(cluster, "long", detach=True)
    assert result == "Job@1:long" and "out 42" not in out  # the script stopped at submit


def test_results_are_written_to_a_local_file(cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(job_submit, "RESULTS_CODE",
                        "import sys; sys.stdout.write('a\\t1\\nb\\t2\\n')")
    result, _, _ = _run(cluster, "data1", results=str(tmp_path / "top.tsv"))
    assert (tmp_path / "top.tsv").read_text() == "a\t1\nb\t2\n"
    assert result.endswith("2 result(s) written to " + str(tmp_path / "top.tsv"))
    assert not list(tmp_path.glob(".top.tsv*"))


@pytest.mark.parametrize("case", ["missing", "not py", "with missing"])
def test_bad_job_input_is_one_line_exit_2(cluster, tmp_path, case):
    script, with_dirs = str(cluster.job / "run.py"), [str(cluster.job / "mods")]
    if case == "missing":
        script = str(tmp_path / "absent.py")
    elif case == "not py":
        script = str(cluster.job / "mods")
    else:
        with_dirs = [str(tmp_path / "nodir")]
    with pytest.raises(ImagebakeError) as err:
        job_submit.run(RECORD, script, [], with_dirs)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    assert cluster.target.calls == []


def test_the_cli_says_a_missing_job_file_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "invoke", "job", "--name", "nosuch",
                           str(tmp_path / "absent.py")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: job file not found: {tmp_path / 'absent.py'}"]


def test_stages_from_jobinfo_rows():
    assert job_submit.stages([["map", 0, 5, 2, 3, 0], ["reduce", 0, 1, 0, 0, 1]]) == \
        "map 3/10, reduce 0/1 (1 failed)"
    assert job_submit.stages(None) == "starting"


def test_control_characters_from_the_cluster_never_reach_the_terminal():
    assert job_submit.safe_text("ok\x1b]0;pwned\x07\tx\n") == "ok\\x1b]0;pwned\\x07\tx\n"
