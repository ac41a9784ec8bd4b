"""`invoke shrink` on the local cluster (issue 15 item 1): its own 4-slave cluster
"shrink-PID" (DDFS replicas 3, so one slave can go), data in DDFS, a job over it; then
shrink the slave holding the most blob replicas. Nothing is lost: every blob of the tag
is still readable (same bytes), none is referenced on the removed node any more, and
the same job gives the same answer; Disco's config and nodeinfo, the master's dnsmasq
hosts and known_hosts no longer have the node, its container is gone. A further
shrink below the replica count is refused in one line with nothing changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from imagebake import state
from imagebake.disco import ddfs_load, jobs, smoke
from imagebake.targets.docker import cluster as docker_cluster
from imagebake.targets.docker.cluster import container_name

from .helpers import disco_config, read, sh

NAME = f"shrink-{os.getpid()}"  # other sessions may run tests/cluster at the same time
TAG = "data:shrink"
TARGET = docker_cluster.DockerTarget()
BLOBS = (
    "python3 -c \"import json; from disco.ddfs import DDFS; "
    f"print(json.dumps([list(r) for r in DDFS().blobs('{TAG}')]))\""
)


def invoke(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def loaded(with_disco, launcher, state_dir):
    record = launcher(NAME, 4)
    with tempfile.TemporaryDirectory() as tmp:
        paths = smoke.write_sample(Path(tmp), files=8, lines=3000, seed=5)
        want = smoke.local_answer(paths, smoke.TOP_K)
        ddfs_load.load(record, [str(p) for p in paths], TAG)
    before = job(record)
    assert before == want.strip()
    return {"record": record, "want": want.strip(), "cat": cat_digest(record),
            "blobs": blobs(record)}


def job(record: dict) -> str:
    run = jobs.run_script(TARGET, record, smoke.NGRAM_JOB, [f"tag://{TAG}", str(smoke.TOP_K)],
                          timeout=300)
    assert run.ok, run.reason
    return run.stdout.strip()


def blobs(record: dict) -> list[list[str]]:
    return json.loads(sh(record, "master", BLOBS, user="disco").stdout.strip().splitlines()[-1])


READ_ALL = (
    "python3 -c \"import hashlib, json, urllib.request as u; from disco.ddfs import DDFS\n"
    "out = {}\n"
    f"for replicas in DDFS().blobs('{TAG}'):\n"
    "    for url in replicas:\n"
    "        host, path = url.split('://', 1)[1].split('/', 1)\n"
    "        data = u.urlopen('http://%s:8989/%s' % (host, path), timeout=30).read()\n"
    "        out.setdefault(path.rsplit('/', 1)[-1], []).append(hashlib.sha256(data)"
    ".hexdigest())\n"
    "print(json.dumps(out))\""
)


def cat_digest(record: dict) -> dict[str, str]:
    """blob name -> sha256, reading EVERY replica of every blob of the tag over HTTP from
    its node (fails if one is unreadable; all replicas of a blob must be equal)."""
    found = json.loads(sh(record, "master", READ_ALL, user="disco").stdout.strip()
                       .splitlines()[-1])
    out = {}
    for blob, digests in found.items():
        assert len(set(digests)) == 1 and len(digests) >= 1, (blob, digests)
        out[blob] = digests[0]
    return out


def host_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0].split(":")[0]


def test_shrink_keeps_every_blob_and_removes_the_node_everywhere(loaded):
    record = loaded["record"]
    counts: dict[str, int] = {}
    for replicas in loaded["blobs"]:
        for url in replicas:
            counts[host_of(url)] = counts.get(host_of(url), 0) + 1
    victim = max(sorted(counts), key=lambda h: counts[h])
    assert victim in state.node_names(record) and counts[victim] > 0

    out = invoke("shrink", "--name", NAME, "--node", victim, "--timeout", "900")
    print(out.stdout, out.stderr[-2000:])  # the drain's progress lines and the summary
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"removed {victim}" in out.stdout and "drained" in out.stdout

    # nothing lost: same bytes, every blob still 3 replicas, none on the victim, same job
    assert cat_digest(record) == loaded["cat"]
    after = blobs(record)
    assert len(after) == len(loaded["blobs"])
    for replicas in after:
        assert victim not in {host_of(u) for u in replicas}, replicas
    assert job(record) == loaded["want"]

    # the node is gone from Disco, DNS, known_hosts, the record and docker
    assert victim not in [h for h, _ in disco_config(record)["hosts"]]
    info = json.loads(sh(record, "master", "curl -s http://127.0.0.1:8989/disco/ctrl/nodeinfo "
                         "|| python3 -c \"import urllib.request as u; print(u.urlopen("
                         "'http://127.0.0.1:8989/disco/ctrl/nodeinfo').read().decode())\"")
                      .stdout.strip().splitlines()[-1])
    assert victim not in info and len(info) == 3
    assert victim not in read(record, "master", "/etc/imagebake/hosts").split()
    known = read(record, "master", "/home/disco/.ssh/known_hosts")
    assert not any(line.split(" ")[0].split(",")[0] == victim for line in known.splitlines())
    saved = state.load(NAME)
    assert victim not in state.node_names(saved) and len(saved["nodes"]) == 3
    gone = subprocess.run(["docker", "inspect", container_name(NAME, victim)],
                          capture_output=True)
    assert gone.returncode != 0


def test_shrink_below_the_replica_count_or_of_the_master_is_refused(loaded):
    record = state.load(NAME)
    config = disco_config(record)
    for args, says in ((["--slaves", "1"], "below the replica count 3"),
                       (["--node", "master"], "the master cannot be removed"),
                       (["--node", "node99"], "no node 'node99'"),
                       (["--slaves", "0"], "remove at least one"),
                       (["--slaves", "3"], "keeps at least one")):
        out = invoke("shrink", "--name", NAME, *args, timeout=120)
        assert out.returncode == 2, out.stdout + out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], out.stderr
    assert disco_config(record) == config
    assert state.load(NAME)["nodes"] == record["nodes"]
