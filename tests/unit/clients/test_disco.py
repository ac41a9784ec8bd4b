"""Readiness with Disco's own view: a cluster whose images carry Disco is ready only when
Disco answers and reports every running slave connected (imagebake/targets/local_status.py,
imagebake/clients/disco.py)."""

from __future__ import annotations

import json

from imagebake import state
from imagebake.clients import disco as api
from imagebake.targets.local_status import assemble

RECORD = {"name": "t", "target": "docker", "master_ip": "10.0.0.2",
          "nodes": [state.node("node01"), state.node("node02")]}
STATES = {"master": "running", "node01": "running", "node02": "running"}
MASTER = {"nodes": [{"hostname": "node01"}, {"hostname": "node02"}]}
CONFIG = {"hosts": [["node01", "2"], ["node02", "2"]]}


def report(disco):
    return assemble(RECORD, STATES, MASTER, CONFIG, None, lambda h: {}, {}, disco=disco)


def view(connected):
    return {"installed": True, "state": "running",
            "nodes": {h: {"connected": c, "max_workers": 2} for h, c in connected.items()}}


def test_ready_only_when_every_running_slave_is_connected_in_disco():
    assert report(view({"node01": True, "node02": True}))["ready"]
    assert not report(view({"node01": True, "node02": False}))["ready"]
    assert not report(view({"node01": True}))["ready"]
    assert not report({"installed": True, "state": "not answering", "nodes": {}})["ready"]


def test_without_disco_in_the_images_readiness_is_the_agents():
    absent = report({"installed": False, "state": "absent", "nodes": {}})
    assert absent["ready"] and absent["disco"]["installed"] is False
    assert report(None)["ready"] and "disco" not in report(None)


def test_view_reads_nodeinfo(monkeypatch):
    body = {"node01": {"connected": True, "max_workers": 2, "tasks": ["Job@1"], "job_ok": 3,
                       "error": 0, "blacklisted": False}}
    monkeypatch.setattr(api, "get", lambda url, path, timeout=5: (200, json.dumps(body).encode()))
    seen = api.view("http://127.0.0.1:1/", True)
    assert seen["nodes"]["node01"] == {"connected": True, "max_workers": 2, "blacklisted": False,
                                       "running_jobs": 1, "jobs_ok": 3, "errors": 0}
    assert seen["state"] == "running: 1/1 hosts connected"
    monkeypatch.setattr(api, "get", lambda url, path, timeout=5: (0, b""))
    assert api.view("http://127.0.0.1:1/", True)["state"] == "not answering"
    assert api.view(None, False)["installed"] is False


def test_an_offline_bake_says_disco_is_not_in_these_images_and_is_ready_without_it():
    """`invoke status` of a cluster baked offline: one line saying so, READY without Disco."""
    from imagebake.report import render_status

    offline = report(api.view(None, installed=False, source="offline"))
    assert offline["ready"]
    assert "  Disco: not in these images (offline bake)" in render_status(offline).splitlines()
    none = render_status(report(api.view(None, installed=False, source="none")))
    assert "Disco: not in these images (baked with disco_source=none)" in none


def test_the_offline_label_means_no_disco(monkeypatch):
    from imagebake.targets.docker import cluster

    for source, installed in (("offline", False), ("none", False), ("vendored@0.5.4", True)):
        assert cluster.disco_installed({"name": "t", "disco_source": source}) is installed
