"""Spot interruption rehearsed in VMs (issue 22 item 3), and what is lost without notice.

1. The emulated IMDS serves a rebalance recommendation, then an instance-action, to one
   slave while a (slowed) 2-gram job has a task running on it; its agent sees it (IMDSv2,
   polled every 5 s) and tells the master, which blacklists it in Disco and DDFS: status
   shows it interrupted within seconds, no task is assigned to it afterwards. Then the
   slave is powered off as EC2 would terminate it (GRACE_SECONDS after the notice instead
   of EC2's 120 s), the job must still give exactly the plain-Python answer, and the
   blobs it held are read back: every one stored with 2 replicas, and those stored with 1
   replica counted (readable only if DDFS moved them away in the time left).
2. No notice at all: one more slave is added, the same job runs, and a slave with a task
   running is powered off abruptly. Measured: how long until Disco marks it disconnected,
   whether (and when) the job ends with the right answer, task failures, and the blobs
   with 1 and 2 replicas that stay readable.

A map output that was only on the powered-off slave is regenerated: the task that
cannot read it reports an input error and Disco re-runs the map elsewhere (our patch
provision/disco/patches/any/disco-0.5.4/0003-regenerate-lost-inputs.patch; before it the
reader was retried up to 100 times and the job never ended). Counted in the figures
(`regenerated`): how often that happened.

Figures go to build/vm-test-results.json (`spot_notice_seconds`, `spot_job`,
`no_notice_job`). Images baked without Disco (disco_source=none, no vendored archives):
the notice half still runs, the job halves skip saying so.

Runs after test_vm_cluster.py (file order): it powers slaves off, so it comes last."""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from pathlib import Path

import pytest

from imagebake import state
from imagebake.agent_client import AgentClient
from imagebake.disco import ddfs_load, jobs, smoke
from imagebake.targets.qemu import cluster as qemu_cluster
from imagebake.targets.qemu import ec2, vm

from ..slow_job import SLOW_JOB, full_count
from .helpers import sh
from .test_vm_cluster import _record_result

pytestmark = [pytest.mark.vm, pytest.mark.slow]
BLACKLISTED_WITHIN = 60  # s; the figure measured is written to the results file
TASK_SECONDS = 5  # each map task sleeps this long first: the job is still running
BLOBS = 4  # ~1 MiB blobs per tag: one map task each
GRACE_SECONDS = 20  # instance-action -> power-off here (EC2: 120 s)
# Bounded, but past Disco's own retry ladder: a worker whose input replica is on a node
# that is gone retries it 9 times with random sleeps of up to 1, 2, 4 ... 256 s
# (disco/comm.py request()) before it takes the next replica: minutes, measured below.
JOB_TIMEOUT = 1500  # a read of the gone node's output fails only after Disco's retry ladder
NO_DISCO = ("no Disco in the images (disco_source=none): the job half needs a Disco bake "
            "(vendored archives in vendor/disco/)")

READ_BLOBS = r"""
import json, sys, time, urllib.request
from disco.ddfs import DDFS
from disco.util import urlresolve
rows = []
for replicas in DDFS().blobs(sys.argv[1]):
    row = {"hosts": sorted(set(u.split("/")[2] for u in replicas)), "readable": False}
    began = time.time()
    for url in replicas:
        try:
            urllib.request.urlopen(urlresolve(url), timeout=float(sys.argv[2])).read()
            row["readable"] = True
            break
        except Exception as exc:
            row.setdefault("errors", []).append(url.split("/")[2] + ": " + str(exc)[:80])
    row["seconds"] = round(time.time() - began, 1)
    rows.append(row)
print(json.dumps(rows))
"""


def _interrupted(cluster) -> dict:
    reply = AgentClient().status("127.0.0.1", cluster["ports"]["join"], cluster) or {}
    return reply.get("interrupted") or {}


def _wait_for(cluster, host, text, began) -> float:
    while time.time() - began < BLACKLISTED_WITHIN:
        if text in _interrupted(cluster).get(host, ""):
            return round(time.time() - began, 1)
        time.sleep(0.5)
    pytest.fail(f"{host} not shown interrupted ({text}) within {BLACKLISTED_WITHIN} s: "
                f"{_interrupted(cluster)}")


def _has_disco(cluster) -> bool:
    return sh(cluster, "master", "command -v disco || true").strip() != ""


def _python_on_master(cluster, script: str, *args: str, user: str = "disco") -> str:
    code = base64.b64encode(script.encode()).decode()
    return sh(cluster, "master", f"echo {code} | base64 -d | python3 - {' '.join(args)}",
              user=user)


def _nodeinfo(cluster) -> dict:
    out = _python_on_master(cluster, "import urllib.request; print(urllib.request.urlopen("
                            "'http://127.0.0.1:8989/disco/ctrl/nodeinfo', timeout=10)"
                            ".read().decode())", user="root")
    return json.loads(out)


def _blobs(cluster, tag: str, timeout: float = 10) -> list[dict]:
    """Each blob of TAG: the hosts holding a replica, whether one replica can be read
    (DDFS's own URLs, tried in turn), how long that took."""
    return json.loads(_python_on_master(cluster, READ_BLOBS, tag, str(timeout)))


def _sample(folder: Path, seed: int) -> list[Path]:
    """BLOBS files of about 1 MiB of 2-gram lines (ddfs-load cuts one blob each)."""
    rng = random.Random(seed)
    paths = []
    for n in range(BLOBS):
        path = folder / f"spot-{seed}-{n}.tsv"
        path.write_text("".join(smoke.ngram_lines(rng, 38_000)))
        paths.append(path)
    return paths


def _load(cluster, tmp_path: Path, tag: str, replicas: int, seed: int) -> tuple[str, list]:
    paths = _sample(tmp_path, seed)
    target = qemu_cluster.QemuTarget()
    target.exec(cluster, f"ddfs rm {tag} >/dev/null 2>&1", user="disco")
    stored = ddfs_load.load(cluster, [str(p) for p in paths], tag, blob_mb=1,
                            replicas=replicas)
    assert stored["blobs"] >= 2, stored
    return full_count(paths), _blobs(cluster, tag)


class Job:
    """The slow job in a thread (jobs.run_script: bounded, reason from Disco's events)."""

    def __init__(self, cluster, tag: str) -> None:
        self.cluster, self.run, self.began = cluster, None, time.time()
        self.thread = threading.Thread(target=self._go, args=(tag,))
        self.thread.start()

    def _go(self, tag: str) -> None:
        self.run = jobs.run_script(qemu_cluster.QemuTarget(), self.cluster, SLOW_JOB,
                                   [str(TASK_SECONDS), f"tag://{tag}"], timeout=JOB_TIMEOUT)
        self.ended = time.time()

    def wait_task_on(self, host: str, within: float = 120) -> float:
        """Seconds until HOST runs one of this job's tasks (Disco's nodeinfo)."""
        while time.time() - self.began < within and self.thread.is_alive():
            if (_nodeinfo(self.cluster).get(host) or {}).get("tasks"):
                return round(time.time() - self.began, 1)
            time.sleep(0.5)
        pytest.fail(f"no task of the job ran on {host} within {within} s")

    def finish(self) -> jobs.JobRun:
        self.thread.join(timeout=JOB_TIMEOUT + 60)
        assert self.run is not None, "the job thread did not end"
        return self.run


def _power_off(cluster, host: str) -> float:
    """Pull the plug (QEMU killed: no shutdown inside the guest, as a terminated instance)."""
    assert vm.stop(vm.paths(cluster, host)["pid"]), f"{host}'s VM was not running"
    return time.time()


def _failures(events: list[list[str]], host: str) -> int:
    """Disco's `Task map:3 failed on "HOST"` events (a task lost with its node)."""
    return sum(1 for _, _, m in events if f'failed on "{host}"' in str(m))


def _assigned_after(events: list[list[str]], host: str, when: float) -> list[str]:
    """Tasks Disco assigned to HOST later than WHEN (host clock; the VMs' clocks come from
    the host's through kvmclock/TCG's RTC: 1 s of slack)."""
    late = []
    for stamp, _, message in events:
        if str(message).endswith(f"assigned to {host}") and _event_time(stamp) > when + 1:
            late.append(f"{stamp} {message}")
    return late


def _event_time(stamp: str) -> float:
    """Disco's event time (`YYYY/MM/DD HH:MM:SS`, the master's clock, UTC) as epoch."""
    import calendar

    return float(calendar.timegm(time.strptime(stamp.strip(), "%Y/%m/%d %H:%M:%S")))


def _job_figures(job, run, host: str, killed: float, replicas2: tuple, replicas1: tuple) -> dict:
    """What both node-loss tests record of the job and of the blobs (before, after) stored
    with 2 and with 1 replica."""
    (before2, after2), (before1, after1) = replicas2, replicas1
    return {
        "job_seconds": round(job.ended - job.began, 1),
        "job_end_after_power_off_s": round(job.ended - killed, 1),
        "tasks_per_host": {h: len(t) for h, t in run.hosts().items()},
        "task_failures_on_victim": _failures(run.events, host),
        "regenerated": _regenerated(run.events),
        "replicas2_on_victim": len(_on(before2, host)),
        "replicas2_readable_after": sum(r["readable"] for r in after2),
        "replicas2_blobs": len(after2),
        "replicas1_on_victim": len(_on(before1, host)),
        "replicas1_readable_after": sum(r["readable"] for r in after1),
        "replicas1_blobs": len(after1),
    }


def _regenerated(events: list[list[str]]) -> int:
    """Disco's `Input failed` events: a task could not read an input from a node gone or
    blacklisted, and the tasks that made it were re-run elsewhere."""
    return sum(1 for _, _, m in events if "Input failed" in str(m))


def _on(rows: list[dict], host: str) -> list[dict]:
    return [r for r in rows if host in r["hosts"]]


def _connected(cluster, host: str) -> bool | None:
    return (_nodeinfo(cluster).get(host) or {}).get("connected")


def _wait_connected(cluster, host: str, want: bool, within: float = 300) -> float:
    """Seconds until Disco's nodeinfo shows HOST connected (WANT) or not (absent counts
    as not connected)."""
    began = time.time()
    while time.time() - began < within:
        if bool(_connected(cluster, host)) == want:
            return round(time.time() - began, 1)
        time.sleep(1)
    pytest.fail(f"Disco does not show {host} {'connected' if want else 'gone'} after "
                f"{within} s: {_nodeinfo(cluster).get(host)}")


def _ttl_node_out_of_the_way(cluster) -> None:
    """Run alone, the suite's TTL node (it powers itself off 9 min after launch) is still
    up: switch it off now, and wait until Disco no longer counts on it, before data and
    tasks land on it (after test_vm_cluster.py it is off already)."""
    ttl = (cluster.get("ttl_node") or {}).get("host")
    if ttl and vm.read_pid(vm.paths(cluster, ttl)["pid"]):
        _power_off(cluster, ttl)
        _wait_connected(cluster, ttl, False)


def test_spot_notice_blacklists_the_slave_within_seconds_and_the_job_still_answers(
        cluster, tmp_path):
    host = state.node_names(cluster)[-1]
    has_disco = _has_disco(cluster)
    job = None
    if has_disco:
        _ttl_node_out_of_the_way(cluster)
        want, before2 = _load(cluster, tmp_path, "data:spot-r2", 2, seed=21)
        _, before1 = _load(cluster, tmp_path, "data:spot-r1", 1, seed=22)
        job = Job(cluster, "data:spot-r2")
        first_task_s = job.wait_task_on(host)
    began = time.time()
    ec2.send_spot_notice(cluster, host, "rebalance")
    rebalance_s = _wait_for(cluster, host, "rebalance", began)
    began = time.time()
    ec2.send_spot_notice(cluster, host, "instance-action")
    action_s = _wait_for(cluster, host, "instance-action terminate", began)
    log = sh(cluster, "master", "journalctl -u imagebake-agent --no-pager -o cat")
    lines = [ln for ln in log.splitlines() if f"spot notice from {host}" in ln]
    assert len(lines) == 2, lines  # one line per event
    assert ("blacklisted in Disco and DDFS" if has_disco
            else "Disco is not running here") in lines[0]
    text = qemu_cluster.QemuTarget().status(cluster)
    _record_result("spot_notice_seconds", {"rebalance": rebalance_s,
                                           "instance_action": action_s,
                                           "master_says": lines[0].split(": ")[-1]})
    assert text is not None
    if job is None:
        pytest.skip(f"notice -> interrupted in {rebalance_s} s / {action_s} s; {NO_DISCO}")
    assert (_nodeinfo(cluster).get(host) or {}).get("blacklisted") is True
    blacklisted_at = time.time()
    time.sleep(max(0.0, GRACE_SECONDS - (time.time() - began)))
    killed = _power_off(cluster, host)
    run = job.finish()
    if not run.ok:
        _record_result("spot_job", {"job_ok": False, "job_reason": run.reason,
                                    "job_seconds": round(job.ended - job.began, 1)})
    assert run.ok, run.reason
    assert run.stdout == want, "the job's answer differs from the plain-Python count"
    late = _assigned_after(run.events, host, blacklisted_at)
    after2, after1 = _blobs(cluster, "data:spot-r2"), _blobs(cluster, "data:spot-r1")
    result = {
        "task_seconds": TASK_SECONDS, "grace_seconds": GRACE_SECONDS,
        "first_task_on_victim_s": first_task_s,
        **_job_figures(job, run, host, killed, (before2, after2), (before1, after1)),
    }
    _record_result("spot_job", result)
    print(json.dumps(result, indent=2))
    assert not late, f"tasks assigned to {host} after it was blacklisted: {late}"
    assert all(r["readable"] for r in after2), after2  # 2 replicas: the other slave's copy
    assert all(r["readable"] for r in after1 if host not in r["hosts"]), after1


def test_no_notice_a_slave_powered_off_mid_job(cluster, tmp_path):
    """What is lost when a slave goes without any notice (measured, see docs/aws.md)."""
    if not _has_disco(cluster):
        pytest.skip(NO_DISCO)
    _ttl_node_out_of_the_way(cluster)
    live = [h for h in state.node_names(cluster) if vm.read_pid(vm.paths(cluster, h)["pid"])]
    assert live, "no slave left to add one to"
    qemu_cluster.QemuTarget()._grow(cluster, 1)
    host = state.node_names(cluster)[-1]
    _wait_connected(cluster, host, True)
    want, before2 = _load(cluster, tmp_path, "data:cut-r2", 2, seed=31)
    _, before1 = _load(cluster, tmp_path, "data:cut-r1", 1, seed=32)
    job = Job(cluster, "data:cut-r2")
    first_task_s = job.wait_task_on(host)
    killed = _power_off(cluster, host)
    noticed = None
    while job.thread.is_alive() and time.time() - killed < JOB_TIMEOUT:
        if noticed is None and (_nodeinfo(cluster).get(host) or {}).get("connected") is False:
            noticed = round(time.time() - killed, 1)
        time.sleep(1)
    run = job.finish()
    after2, after1 = _blobs(cluster, "data:cut-r2"), _blobs(cluster, "data:cut-r1")
    lost1 = [r for r in after1 if not r["readable"]]
    result = {
        "task_seconds": TASK_SECONDS, "first_task_on_victim_s": first_task_s,
        "disco_disconnected_after_s": noticed,
        "job_ok": run.ok, "job_reason": run.reason,
        "job_answer_correct": run.ok and run.stdout == want,
        **_job_figures(job, run, host, killed, (before2, after2), (before1, after1)),
        "replicas1_lost_read_seconds": max((r["seconds"] for r in lost1), default=None),
    }
    _record_result("no_notice_job", result)
    print(json.dumps(result, indent=2))
    assert all(r["readable"] for r in after2), after2
    assert len(lost1) == len(_on(before1, host)), after1  # 1 replica: gone with the node
    assert run.ok, run.reason
    assert run.stdout == want, "the job's answer differs from the plain-Python count"
