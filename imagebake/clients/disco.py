"""Disco's own view of a cluster, from the master's HTTP API (Disco 0.5.4, master/src/
disco_web.erl): GET /disco/ctrl/nodeinfo answers, per host in the hosts table,
max_workers, connected, blacklisted, job counters, tasks (names of running jobs)
and the DDFS disk figures. The API is unauthenticated: reach it on loopback only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

TIMEOUT = 5.0


def get(base_url: str, path: str, timeout: float = TIMEOUT) -> tuple[int, bytes]:
    """(HTTP status, body) of BASE_URL + PATH; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + path, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (OSError, ValueError):
        return 0, b""


def nodeinfo(base_url: str) -> dict | None:
    """host -> Disco's info about it, or None when the master does not answer."""
    status, body = get(base_url, "/disco/ctrl/nodeinfo")
    if status != 200:
        return None
    try:
        found = json.loads(body.decode("utf-8"))
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


NO_DISCO = ("none", "offline")  # disco_source labels of images baked without Disco


def absent(source: str) -> str:
    """Why the images of a cluster carry no Disco, as status says it."""
    if source == "offline":
        return "not in these images (offline bake)"
    return "not in these images (baked with disco_source=none)"


def view(base_url: str | None, installed: bool, source: str = "none") -> dict:
    """The `disco` part of a status report: state, and per host connected / workers.
    Without Disco in the images (SOURCE says why) readiness is the cluster's alone."""
    if not installed:
        return {"installed": False, "state": absent(source), "nodes": {}}
    info = nodeinfo(base_url) if base_url else None
    if info is None:
        return {"installed": True, "state": "not answering", "url": base_url, "nodes": {}}
    nodes = {host: {"connected": bool(entry.get("connected")),
                    "max_workers": entry.get("max_workers"),
                    "blacklisted": bool(entry.get("blacklisted")),
                    "running_jobs": len(entry.get("tasks") or []),
                    "jobs_ok": entry.get("job_ok"), "errors": entry.get("error")}
             for host, entry in sorted(info.items()) if isinstance(entry, dict)}
    connected = sum(1 for n in nodes.values() if n["connected"])
    return {"installed": True, "state": f"running: {connected}/{len(nodes)} hosts connected",
            "url": base_url, "nodes": nodes}
