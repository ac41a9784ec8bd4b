"""Spot interruption rehearsed in VMs (issue 22 item 3): the emulated IMDS serves a
rebalance recommendation, then an instance-action, to one slave while a job runs; its
agent sees it (IMDSv2, polled every 5 s) and tells the master, which blacklists it in
Disco and DDFS; status shows it interrupted within seconds, and the job's answer is
still right. The images the suite bakes have no Disco (disco_source=none): then the
job half is skipped with that reason and the notice half still runs.

Runs after test_vm_cluster.py (file order): the slave stays blacklisted afterwards."""

from __future__ import annotations

import threading
import time

import pytest

from imagebake import state
from imagebake.agent_client import AgentClient
from imagebake.disco import smoke
from imagebake.targets.qemu import cluster as qemu_cluster
from imagebake.targets.qemu import ec2

from .helpers import sh
from .test_vm_cluster import _record_result

pytestmark = [pytest.mark.vm, pytest.mark.slow]
BLACKLISTED_WITHIN = 60  # s; the figure measured is written to the results file


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


def test_spot_notice_blacklists_the_slave_within_seconds_and_the_job_still_answers(
        cluster):
    host = state.node_names(cluster)[-1]
    has_disco = sh(cluster, "master", "command -v disco || true").strip() != ""
    outcome: dict = {}
    job = None
    if has_disco:
        def run_job():
            outcome["ok"], outcome["text"] = smoke.smoke(cluster)

        job = threading.Thread(target=run_job)
        job.start()
        time.sleep(5)  # the job is under way
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
                                           "instance_action": action_s})
    assert text is not None
    if job is None:
        pytest.skip(f"notice -> interrupted in {rebalance_s} s / {action_s} s; no Disco in "
                    "the images (disco_source=none): the job half needs a Disco bake")
    job.join(timeout=900)
    assert outcome.get("ok"), outcome.get("text")
    nodeinfo = sh(cluster, "master", "python3 -c \"import urllib.request;print(urllib."
                  "request.urlopen('http://127.0.0.1:8989/disco/ctrl/nodeinfo').read()"
                  ".decode())\"")
    assert host in nodeinfo
