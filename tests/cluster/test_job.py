"""`invoke job` on real Disco (issue 20 item 3): the 2-gram job from the laptop with its
stages and a results file, a job that raises (exit 1, the reason line), detach + status +
kill, and Ctrl-C (the job killed, nothing left on the master). One 2-slave cluster."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagebake.disco import smoke

from .helpers import sh

PROBE = str(Path(smoke.__file__).parent / "probe_job.py")
JOB = str(smoke.NGRAM_JOB)


@pytest.fixture(scope="module")
def jc(with_disco, launcher):
    return launcher("h4job", 2)


def invoke(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], capture_output=True,
                          text=True, timeout=timeout)


def left_on_master(record: dict) -> str:
    return sh(record, "master", "ls -d /tmp/imagebake-job.* 2>/dev/null || true").stdout.strip()


def test_the_2gram_job_runs_from_the_laptop_with_stages_and_a_results_file(jc, state_dir,
                                                                          tmp_path):
    paths = smoke.write_sample(tmp_path, files=2, lines=2000)
    inputs = [a for p in paths for a in ("--input", str(p))]
    loaded = invoke("ddfs-load", "--name", "h4job", *inputs, "--tag", "data:h4job")
    assert loaded.returncode == 0, loaded.stderr
    results = tmp_path / "out" / "counts.tsv"
    results.parent.mkdir()
    out = invoke("job", "--name", "h4job", JOB, "--results", str(results), "--",
                 "tag://data:h4job", "5")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("job Job@")[0].strip() == smoke.local_answer(paths, 5).strip()
    # Disco's stages, from its jobinfo API (the two small inputs share one blob: one map)
    assert "ready: map 1/1, map_shuffle 1/1, reduce 1/1" in out.stderr, out.stderr
    counts = dict(line.split("\t") for line in results.read_text().splitlines())
    job = smoke.load_job_module()
    want = dict(job.reduce_counts([kv for p in paths for line in p.read_text().splitlines()
                                   for kv in job.map_ngram(line, None)], None))
    assert {k: int(v) for k, v in counts.items()} == want
    assert left_on_master(jc) == ""


def test_a_job_that_raises_is_exit_1_with_the_reason_line(jc, state_dir):
    out = invoke("job", "--name", "h4job", PROBE, "--", "raise", "2", "0")
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: job Job@") and last.endswith(
        "ValueError: imagebake probe: map failed on purpose"), last
    assert left_on_master(jc) == ""


def test_detach_then_status_list_logs_and_kill(jc, state_dir):
    out = invoke("job", "--name", "h4job", PROBE, "--detach", "--", "hosts", "4", "120")
    assert out.returncode == 0, out.stderr
    name = out.stdout.strip().splitlines()[-1]
    assert name.startswith("Job@")
    status = invoke("job-status", "--name", "h4job", name)
    assert status.returncode == 0 and f"job {name}: active" in status.stdout, status.stdout
    assert f"active   {name}" in invoke("job-list", "--name", "h4job").stdout
    logs = invoke("job-logs", "--name", "h4job", name)
    end = time.monotonic() + 60  # Disco writes a job's first events a moment after it runs
    while "assigned to node0" not in logs.stdout and time.monotonic() < end:
        time.sleep(1)
        logs = invoke("job-logs", "--name", "h4job", name)
    assert "assigned to node0" in logs.stdout, logs.stdout + logs.stderr
    killed = invoke("job-kill", "--name", "h4job", name)
    assert killed.returncode == 0 and killed.stdout.strip() == f"job {name} killed"
    status = invoke("job-status", "--name", "h4job", name)
    assert status.returncode == 1 and f"job {name}: dead" in status.stdout
    assert left_on_master(jc) == ""


def test_ctrl_c_kills_the_job_when_told_and_leaves_nothing(jc, state_dir):
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "job", "--name", "h4job", PROBE,
                             "--on-interrupt", "kill", "--", "hosts", "4", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    name, seen = None, []
    end = time.monotonic() + 180
    while name is None and time.monotonic() < end:
        line = proc.stderr.readline()
        seen.append(line)
        if line.endswith(" submitted\n"):
            name = line.split()[1]
    assert name, seen
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and f"job {name} killed" in err, err
    status = invoke("job-status", "--name", "h4job", name)
    assert f"job {name}: dead" in status.stdout
    end = time.monotonic() + 30
    while left_on_master(jc) and time.monotonic() < end:
        time.sleep(1)
    assert left_on_master(jc) == ""
