"""A slave lost mid-job with map outputs on it (issue 22): the job still gives the exact
answer, because Disco re-runs the maps whose outputs went with the node (our patch
provision/disco/patches/any/disco-0.5.4/0003-regenerate-lost-inputs.patch; without it
the task reading such an output is retried, up to 100 times, and the job never ends).

Its own cluster "lost-PID" (2 slaves), 8 blobs stored with 2 replicas (so the job's
input survives the node), the slowed 2-gram job of the VM test; once a map task has
finished on the victim (its output is there) the victim's container is killed, as a
reclaimed instance would vanish. The same flow runs in VMs with a spot notice first
(tests/vm/test_vm_spot.py)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from imagebake import state
from imagebake.disco import ddfs_load, jobs, smoke
from imagebake.targets.docker import cluster as docker_cluster
from imagebake.targets.docker.cluster import container_name

from ..slow_job import SLOW_JOB, full_count
from .helpers import sh

NAME = f"lost-{os.getpid()}"
TAG = "data:lost"
TARGET = docker_cluster.DockerTarget()
TASK_SECONDS = 4
BLOBS = 8
JOB_TIMEOUT = 1200  # Disco's own retry ladder on a dead URL takes minutes (comm.request)


def _nodeinfo(record: dict) -> dict:
    out = sh(record, "master", "python3 -c \"import urllib.request; print(urllib.request."
                               "urlopen('http://127.0.0.1:8989/disco/ctrl/nodeinfo', "
                               "timeout=10).read().decode())\"")
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def loaded(with_disco, launcher, state_dir):
    record = launcher(NAME, 2)
    rng = random.Random(41)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for n in range(BLOBS):
            path = Path(tmp) / f"lost-{n}.tsv"
            path.write_text("".join(smoke.ngram_lines(rng, 40_000)))
            paths.append(path)
        stored = ddfs_load.load(record, [str(p) for p in paths], TAG, blob_mb=1, replicas=2)
        assert stored["blobs"] >= BLOBS - 2, stored  # ~1 MiB blobs
        return {"record": record, "want": full_count(paths)}


def test_a_slave_killed_with_map_outputs_on_it_the_job_still_answers(loaded):
    record = loaded["record"]
    victim = state.node_names(record)[-1]
    done_before = (_nodeinfo(record).get(victim) or {}).get("job_ok", 0)
    result: dict = {}

    def run() -> None:
        result["run"] = jobs.run_script(TARGET, record, SLOW_JOB,
                                        [str(TASK_SECONDS), f"tag://{TAG}"],
                                        timeout=JOB_TIMEOUT)

    thread = threading.Thread(target=run)
    began = time.time()
    thread.start()
    while (_nodeinfo(record).get(victim) or {}).get("job_ok", 0) <= done_before:
        assert thread.is_alive() and time.time() - began < 300, \
            f"no task of the job finished on {victim} within 300 s"
        time.sleep(0.5)
    killed = subprocess.run(["docker", "kill", container_name(NAME, victim)],
                            capture_output=True, text=True)
    assert killed.returncode == 0, killed.stderr
    killed_at = time.time()
    thread.join(JOB_TIMEOUT + 120)
    job = result["run"]
    print(f"\njob {job.name}: killed {victim} {killed_at - began:.0f} s in, "
          f"ended {time.time() - killed_at:.0f} s after")
    assert job.ok, job.reason
    assert job.stdout == loaded["want"], "the job's answer differs from the plain-Python count"
    lost = [m for _, _, m in job.events if f"http://{victim}:" in str(m)
            and "CommError" in str(m)]
    regenerated = [m for _, _, m in job.events if "Input failed" in str(m)]
    # the proof that the path ran: a read of the victim's output failed, as an input error
    assert lost and regenerated, [m for _, _, m in job.events][-20:]
