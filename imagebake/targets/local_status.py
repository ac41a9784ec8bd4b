"""What every local target (docker, qemu) reports the same way: a cluster's
status assembled from the master agent's report and Disco's config, and the
wait until it is ready. The targets only say how to look at their machines."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from .. import state
from ..agent_client import members
from ..errors import ImagebakeError
from ..progress import progress_bar
from .ready import cluster_ready

AgentStatus = Callable[[str], "dict | None"]


def node_hostname(index: int) -> str:
    return f"node{index:02d}"


def assemble(record: dict, states: dict[str, str], master_state: dict | None,
             config: dict | None, agent_status: AgentStatus | None,
             node_fields: Callable[[str], dict], master_fields: dict,
             disco: dict | None = None, signed: bool = False) -> dict:
    """The status report: per node its state, whether it joined and its Disco workers.

    Ready (ready.cluster_ready): the master runs, at least one node runs, and every
    running node has joined and is in Disco's config (a dead node is reported missing,
    not waited for). With DISCO (Disco's own view, imagebake.clients.disco.view) of a
    cluster whose images carry Disco, also: Disco answers and reports every running node
    connected. SIGNED: MASTER_STATE is the master agent's signed status reply, which
    must also count every running node as joined.
    """
    joined = members(master_state)
    in_config = {row[0]: row[1] for row in (config or {}).get("hosts", [])}
    running = [h for h in state.node_names(record) if states.get(h) == "running"]
    agents: dict[str, dict | None] = {}
    if agent_status and running:
        with ThreadPoolExecutor(max_workers=8) as pool:
            agents = dict(zip(running, pool.map(agent_status, running)))
    nodes = []
    for host in state.node_names(record):
        nodes.append({
            "hostname": host, "address": joined.get(host, {}).get("address"),
            **node_fields(host),
            "state": states.get(host, "missing"), "joined": host in joined,
            "workers": in_config.get(host), "agent": agents.get(host),
        })
        if disco is not None:
            nodes[-1]["disco"] = (disco.get("nodes") or {}).get(host)
    seen = (disco or {}).get("nodes") or {}
    check_disco = disco is not None and disco.get("installed")
    ready = cluster_ready(
        master_running=states.get("master") == "running",
        nodes=[{"state": n["state"], "joined": n["joined"],
                "usable": n["hostname"] in in_config and (
                    not check_disco or bool((seen.get(n["hostname"]) or {}).get("connected")))}
               for n in nodes],
        reply=master_state, expected=len(running) if signed else None)
    return {
        "name": record["name"], "target": record["target"],
        "ready": ready,
        "master": {"hostname": "master", "address": record["master_ip"],
                   "state": states.get("master", "missing"), "agent": master_state,
                   **master_fields},
        "disco_config": config, "nodes": nodes,
        **({"disco": disco} if disco is not None else {}),
        "missing": [n["hostname"] for n in nodes if n["state"] != "running"],
    }


def wait_ready(record: dict, started: float, status: Callable[[dict], dict], timeout: float,
               poll: float, master_down: Callable[[dict], str], hint: str = "") -> float:
    """Poll STATUS until ready; seconds since STARTED. One-line errors when the master
    goes down (MASTER_DOWN says where to look) or TIMEOUT passes."""
    deadline = time.time() + timeout
    label = f"cluster {record['name']} ({record['target']}): nodes joined"
    with progress_bar(label, len(record["nodes"])) as advance:
        while True:
            report = status(record)
            advance(sum(1 for n in report["nodes"] if n["joined"]))
            if report["ready"]:
                return round(time.time() - started, 2)
            if report["master"]["state"] not in ("running", "created"):
                raise ImagebakeError(master_down(report))
            if time.time() > deadline:
                late = [n["hostname"] for n in report["nodes"] if not n["joined"]]
                what = f"not joined: {', '.join(late) or 'none'}"
                disco = report.get("disco")
                if not late and disco and disco.get("installed"):
                    off = [n["hostname"] for n in report["nodes"] if n["state"] == "running"
                           and not (n.get("disco") or {}).get("connected")]
                    what = f"Disco {disco.get('state')}; not connected in Disco: " \
                           f"{', '.join(off) or 'none'}"
                raise ImagebakeError(
                    f"cluster {record['name']!r} not ready after {int(time.time() - started)}s: "
                    f"{what} (`invoke status --name {record['name']}`{hint})")
            time.sleep(poll)


def forget(name: str, folder, what: str) -> list[str]:
    """Remove the cluster's local files (FOLDER, described as WHAT) and its record."""
    import shutil

    from .. import state

    removed = []
    if folder.exists():
        shutil.rmtree(folder)
        removed.append(what)
    if state.remove(name):
        removed.append("local record")
    return removed


def destroyed(name: str, removed: list[str], kind: str) -> str:
    if not removed:
        return f"nothing to destroy: no {kind} cluster named {name!r}"
    return f"destroyed cluster {name!r}: removed {', '.join(removed)}"
