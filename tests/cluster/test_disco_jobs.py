"""Real Disco on the local cluster: jobs, DDFS, growth, a lost slave, a restarted master,
failing jobs and a clean stop. Skipped when the baked images carry no Disco.

One 2-slave cluster ("dj") is shared by the tests below, in file order (each cluster costs
time); the later tests change it (grow, a killed slave, a master restart). A 1-slave
cluster ("dj1") checks the replica count at its lower bound and the clean stop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from imagebake import state
from imagebake.disco import jobs
from imagebake.targets.docker import cluster as docker_cluster
from imagebake.targets.docker.cluster import container_name

from .helpers import sh

PROBE = Path(jobs.__file__).parent / "probe_job.py"
TARGET = docker_cluster.DockerTarget()
REPLICA_KEYS = ("DDFS_TAG_MIN_REPLICAS", "DDFS_TAG_REPLICAS", "DDFS_BLOB_REPLICAS")


@pytest.fixture(scope="module")
def dj(with_disco, launcher):
    return launcher("dj", 2)


@pytest.fixture(scope="module")
def dj1(with_disco, launcher):
    return launcher("dj1", 1)


def invoke(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], capture_output=True,
                          text=True, timeout=timeout)


def probe(record: dict, mode: str, tasks: int, seconds: float, timeout: int = 120):
    return jobs.run_script(TARGET, record, PROBE, [mode, str(tasks), str(seconds)],
                           timeout=timeout)


def host_counts(run) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[1]) for line in run.stdout.splitlines()
            if len(line.split()) == 2}


def disco_processes(record: dict, host: str) -> list[str]:
    """Processes of the disco user other than Erlang's own (job workers), with state and
    CPU, plus any zombie of any user."""
    out = sh(record, host, "ps -eo user=,stat=,pcpu=,etimes=,args=", check=False).stdout
    found = []
    for line in out.splitlines():
        words = line.split(None, 4)
        if len(words) < 5:
            continue
        user, stat, _, _, args = words
        if stat.startswith("Z") or (user == "disco" and "python" in args):
            found.append(line.strip())
    return found


def running_replicas(record: dict) -> dict[str, int]:
    """The replica settings the running Disco master uses (its environment)."""
    out = sh(record, "master", "cat /proc/$(pgrep -o -u disco beam.smp)/environ | tr '\\0' '\\n'",
             user="disco").stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {k: int(env[k]) for k in REPLICA_KEYS}


def connected(record: dict) -> list[str]:
    report = docker_cluster.status(record, per_node=False)
    return sorted(h for h, n in report["disco"]["nodes"].items() if n["connected"])


# ---------------------------------------------------------------- status, UI, smoke
def test_status_is_ready_with_every_slave_connected_in_disco(dj, state_dir):
    out = invoke("status", "--name", "dj", "--json", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ready"] and report["disco"]["installed"]
    assert {h: n["connected"] for h, n in report["disco"]["nodes"].items()} == {
        "node01": True, "node02": True}
    assert all(n["disco"]["max_workers"] >= 1 for n in report["nodes"])
    text = invoke("status", "--name", "dj", timeout=120).stdout
    assert "disco   API: running: 2/2 hosts connected" in text


def test_tunnel_web_ui_answers_200_on_loopback_only(dj, state_dir):
    out = invoke("tunnel", "--name", "dj", timeout=60)
    assert out.returncode == 0, out.stderr
    url = out.stdout.split()[3]
    assert url.startswith("http://127.0.0.1:")
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
    ports = subprocess.run(["docker", "port", container_name("dj", "master")],
                           capture_output=True, text=True).stdout.split()
    assert all(p.startswith("127.0.0.1:") for p in ports if ":" in p), ports


def test_smoke_runs_the_2gram_job_on_ddfs_data_on_the_slaves_only(dj, state_dir):
    out = invoke("smoke", "--name", "dj")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "top-5 matches the plain-Python answer" in out.stdout
    assert "tasks ran on the slaves only, none on the master" in out.stdout
    assert "  master:" not in out.stdout
    assert "  node01:" in out.stdout or "  node02:" in out.stdout


# ---------------------------------------------------------------- ddfs-load faults
@pytest.mark.parametrize("case", ["missing file", "bad tag"])
def test_ddfs_load_bad_input_is_one_line_and_writes_nothing(dj, state_dir, tmp_path, case):
    sample = tmp_path / "grams.tsv"
    sample.write_text("of the\t1999\t12\t3\t1\n")
    tag = "data:fault-probe"
    args = ["--input", str(sample), "--input", str(tmp_path / "absent.tsv.gz"), "--tag", tag]
    if case == "bad tag":
        tag = "data.fault-probe"
        args = ["--input", str(sample), "--tag", tag]
    out = invoke("ddfs-load", "--name", "dj", *args, timeout=120)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    tags = sh(dj, "master", "ddfs ls", user="disco").stdout.split()
    assert "data:fault-probe" not in tags and "data.fault-probe" not in tags
    assert sh(dj, "master", "ls /tmp | grep -c imagebake-ddfs || true").stdout.strip() == "0"


# ---------------------------------------------------------------- DDFS replicas
def test_ddfs_replicas_never_exceed_the_live_slaves(dj, dj1):
    for record in (dj, dj1):
        live = len(connected(record))
        used = running_replicas(record)
        assert all(1 <= v <= min(3, live) for v in used.values()), (record["name"], used, live)
    assert running_replicas(dj1) == dict.fromkeys(REPLICA_KEYS, 1)  # Disco's default is 3
    # and DDFS works at that setting: a blob stored on the one slave, read back
    sh(dj1, "master", "echo hello > /tmp/r.txt && ddfs push data:r /tmp/r.txt", user="disco")
    assert sh(dj1, "master", "ddfs cat data:r", user="disco").stdout.strip() == "hello"


# ---------------------------------------------------------------- failing jobs
@pytest.mark.parametrize("mode,says", [
    ("raise", "ValueError: imagebake probe: map failed on purpose"),
    ("fd2", "the job wrote to stderr, which is Disco's worker protocol channel"),
])
def test_failing_job_is_one_clear_line_and_leaves_no_worker(dj, mode, says):
    begun = time.monotonic()
    run = probe(dj, mode, 2, 0, timeout=40)
    assert not run.ok and run.name
    assert says in run.reason and "\n" not in run.reason, run.reason
    assert time.monotonic() - begun < 40 + 45  # bounded, never a hang
    time.sleep(3)
    status = sh(dj, "master", "disco jobs -S", user="disco").stdout
    assert f"{run.name}\tdead" in status, status
    for host in state.node_names(dj):
        assert disco_processes(dj, host) == [], host
    # a job printing to sys.stderr is fine: Disco's worker turns it into a message
    ok = probe(dj, "stderr", 2, 0, timeout=60)
    assert ok.ok and sum(host_counts(ok).values()) == 2, ok.reason


# ---------------------------------------------------------------- grow
def test_grow_adds_a_slave_that_runs_tasks_of_the_next_job(dj, state_dir):
    master = container_name("dj", "master")
    started = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", master],
                             capture_output=True, text=True).stdout
    beam = sh(dj, "master", "pgrep -o -u disco beam.smp").stdout.strip()
    out = invoke("grow", "--name", "dj", "--slaves", "1", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    dj["nodes"] = dj["nodes"] + [state.node("node03")]
    assert connected(dj) == ["node01", "node02", "node03"]
    run = probe(dj, "hosts", 12, 2)
    assert run.ok, run.reason
    counts = host_counts(run)
    assert sum(counts.values()) == 12 and counts.get("node03", 0) >= 1, counts
    assert "node03" in run.hosts()
    # the master container and its Disco VM were never restarted
    assert subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", master],
                          capture_output=True, text=True).stdout == started
    assert sh(dj, "master", "pgrep -o -u disco beam.smp").stdout.strip() == beam


# ---------------------------------------------------------------- a slave lost mid-job
def test_slave_killed_during_a_job_completes_or_fails_in_one_line_in_bounded_time(dj):
    timeout = 60

    def kill_later():  # node03 has finished maps by then (their output lives on it), more run
        time.sleep(3)
        subprocess.run(["docker", "kill", container_name("dj", "node03")], capture_output=True)

    killer = threading.Thread(target=kill_later)
    begun = time.monotonic()
    killer.start()
    run = probe(dj, "hosts", 36, 1, timeout=timeout)
    killer.join()
    took = time.monotonic() - begun
    assert took < timeout + 45, took  # never hangs
    if run.ok:
        assert sum(host_counts(run).values()) == 36, run.stdout  # correct despite the loss
    else:
        assert run.reason.startswith(f"job {run.name} failed: ") and "\n" not in run.reason
        status = sh(dj, "master", "disco jobs -S", user="disco").stdout
        assert f"{run.name}\tdead" in status, status  # killed, not left retrying
    report = docker_cluster.status(dj, per_node=False)
    assert report["missing"] == ["node03"]


# ---------------------------------------------------------------- master restart
def test_master_restarted_cluster_runs_jobs_again(dj):
    subprocess.run(["docker", "restart", container_name("dj", "master")], check=True,
                   capture_output=True, timeout=120)
    try:
        docker_cluster.wait_ready(dj, time.time())  # node03 is dead: reported missing
    except Exception as exc:
        log = sh(dj, "master", "tail -n 40 /usr/var/disco/log/console.log", check=False).stdout
        agent = subprocess.run(["docker", "logs", "--tail", "30", container_name("dj", "master")],
                               capture_output=True, text=True)
        raise AssertionError(f"{exc}\n{log}\n{agent.stdout}{agent.stderr}") from None
    assert {"node01", "node02"} <= set(connected(dj))
    run = probe(dj, "hosts", 6, 0.5)
    assert run.ok, run.reason
    assert sum(host_counts(run).values()) == 6
    assert set(run.hosts()) <= {"node01", "node02"}


# ---------------------------------------------------------------- clean stop
def test_destroy_stops_disco_cleanly_no_zombie_no_spinning_vm(dj1):
    message = docker_cluster.stop_disco("dj1")
    assert message and message.startswith("Disco stopped in "), message
    assert float(message.split()[-1].rstrip("s")) < 15
    time.sleep(1)
    out = sh(dj1, "master", "ps -eo stat=,pcpu=,comm=").stdout
    assert not [ln for ln in out.splitlines() if ln.split()[0].startswith("Z")], out
    assert "beam.smp" not in out and "disco" not in out, out
    # destroy does the same stop first, then removes the containers
    sh(dj1, "master", "disco start && sleep 2 && disco status")
    said = TARGET.destroy("dj1", None)
    assert "destroyed cluster 'dj1': removed Disco stopped in " in said, said
    left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=imagebake.cluster=dj1"],
                          capture_output=True, text=True).stdout.split()
    assert left == []
