"""Human-readable rendering of a cluster status report (any target)."""

from __future__ import annotations

from .terminal import safe_fields


def render_status(report: dict) -> str:
    """Lines of `invoke status`; every string the cluster sent is shown escaped, on one line."""
    report = safe_fields(report)
    master = report.get("master") or {}
    lines = [
        f"cluster {report.get('name')} ({report.get('target')}): "
        f"{'READY' if report.get('ready') else 'NOT READY'}",
        f"  master  {master.get('address', '?'):<15} {master.get('state', '?'):<10}"
        f" {master.get('web_ui') or ''}",
    ]
    agent = master.get("agent") or {}
    if agent.get("disco"):
        lines.append(f"  disco   {agent['disco']}")
    disco = report.get("disco")  # Disco's own view (its HTTP API), where the target has it
    if disco and not disco.get("installed"):
        lines.append(f"  Disco: {disco.get('state')}")
    elif disco:
        lines.append(f"  disco   API: {disco.get('state')}")
    interrupted = dict(agent.get("interrupted") or {})  # spot notices, by hostname
    for node in report.get("nodes", []):
        joined = "joined" if node.get("joined") else "not joined"
        notice = interrupted.pop(node.get("hostname"), None)
        workers = node.get("workers")
        seen = ""
        if disco and disco.get("installed"):
            info = node.get("disco") or {}
            seen = (f"  disco: connected, {info.get('max_workers')} workers"
                    if info.get("connected") else "  disco: NOT connected")
        lines.append(
            f"  {node.get('hostname', '?'):<7} {node.get('address') or '':<15} "
            f"{'interrupted' if notice else node.get('state', '?'):<10} {joined:<10} "
            f"{'workers ' + str(workers) if workers is not None else 'not in Disco config'}"
            f"{seen}"
            + (f"  spot notice: {notice}; blacklisted, forgotten once gone" if notice else "")
        )
    for name, notice in sorted(interrupted.items()):
        lines.append(f"  {name:<7} interrupted before it joined (spot notice: {notice})")
    if agent.get("master_notice"):
        lines.append(f"  warning: the master has a spot notice ({agent['master_notice']}): "
                     "the master will go, and the cluster's data (DDFS, job results) with it")
    if report.get("missing"):
        lines.append(f"  missing: {', '.join(report['missing'])}")
    for warning in report.get("warnings") or []:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)
