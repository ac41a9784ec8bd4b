"""What the AWS target prints: the status report (from one DescribeInstances and the
master agent's signed reply) and the summary after a launch or grow."""

from __future__ import annotations

import time

from ..ready import cluster_ready


def status_report(record: dict, found: dict[str, dict], reply: dict | None) -> dict:
    """The report of `invoke status`; FOUND maps instance id -> instances.brief()."""
    master_entry = record.get("master") or {}
    master = found.get(master_entry.get("id"), {**master_entry, "state": "missing"})
    by_address = {n.get("address"): n for n in (reply or {}).get("nodes", [])
                  if isinstance(n, dict)}
    nodes = []
    for entry in record.get("nodes", []):
        info = found.get(entry["id"], {**entry, "state": "missing"})
        joined = by_address.get(info.get("private_ip"))
        nodes.append({
            "id": entry["id"], "hostname": (joined or {}).get("hostname") or entry["id"],
            "address": info.get("private_ip"), "public_ip": info.get("public_ip"),
            "state": info["state"], "joined": joined is not None,
            "workers": (joined or {}).get("cores"),
        })
    extra = sorted(i for i, b in found.items()
                   if i not in record.get("ids", []) and b["state"] != "terminated")
    missing = [n["id"] for n in nodes if n["state"] != "running"]
    ready = cluster_ready(master_running=master.get("state") == "running", nodes=nodes,
                          every_node=True, reply=reply, expected=len(nodes))
    public = master.get("public_ip")
    return {
        "name": record["name"], "target": "aws", "ready": ready,
        "region": record["region"], "az": record["az"], "subnet": record["subnet"],
        "security_group": record.get("security_group"),
        "master": {"id": master.get("id"), "hostname": "master", "address": public,
                   "private_ip": master.get("private_ip"), "state": master.get("state"),
                   "agent": reply,
                   # Disco's port is open to members only (network.LISTENERS)
                   "web_ui": f"web UI: invoke tunnel --name {record['name']}"},
        "nodes": nodes, "missing": missing, "untracked": extra,
        "agent_reachable": reply is not None,
    }


def summary(record: dict) -> str:
    master = record.get("master") or {}
    name = record["name"]
    state_word = "ready" if record.get("ready") else "launched (agents not checked yet)"
    lines = [
        f"cluster {name} (aws {record['region']} {record['az']}, {record['subnet']}, "
        f"group {record.get('security_group')}): {state_word}",
        f"  master  {master.get('id')}  {master.get('public_ip') or '-'}  "
        f"({master.get('private_ip')}, {record.get('master_instance_type')}"
        f"{', spot: its interruption ends the cluster' if record.get('spot_master') else ''})",
        f"  slaves  {len(record.get('nodes', []))} x {record.get('instance_type')}"
        f"{' spot' if record.get('spot') else ''}",
    ]
    if record.get("ttl_deadline"):
        until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record["ttl_deadline"]))
        lines.append(f"  powers off at {until} (--ttl {record.get('ttl')})")
    lines.append(f"  next: invoke status --name {name} | invoke tunnel --name {name} "
                 f"| invoke destroy --name {name}")
    return "\n".join(lines)
