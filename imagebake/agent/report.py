"""`imagebake-agent status`: what this machine's agent did, and whether it is ready
(ready.py decides)."""

from . import ready
from .fsutil import load_json
from .master import NODES_FILE
from .state import STATE_FILE

PHASE_ORDER = ("spec", "keys", "services", "serve", "join", "trust", "dns", "disco")
MEMBER_FIELDS = ("hostname", "address", "addresses", "cores", "host_pubkey")


def status_report(ctx):
    """The state file, plus the master's registry; (report dict, ready bool)."""
    state = load_json(ctx.path(STATE_FILE), {}) or {}
    report = dict(state)
    phases = state.get("phases", {})
    if state.get("role") == "master":
        registry = load_json(ctx.path(NODES_FILE), {}) or {}
        nodes = [dict((k, n.get(k)) for k in MEMBER_FIELDS) for n in registry.get("nodes", [])]
        report["nodes"] = nodes
        report["joined"] = len(nodes)
        is_ready = ready.master_ready(phases, len(nodes), state.get("expected_nodes", 0))
    else:
        is_ready = ready.node_ready(phases)
    report["ready"] = is_ready
    if not state:
        report.setdefault("note", "no state: the agent has not run here")
    return report, is_ready


def render(report, is_ready):
    """The human-readable status (lines)."""
    lines = ["role: %s  cluster: %s  hostname: %s  ready: %s" % (
        report.get("role"), report.get("cluster"), report.get("hostname"),
        "yes" if is_ready else "no")]
    for name, phase in sorted(report.get("phases", {}).items(),
                              key=lambda kv: PHASE_ORDER.index(kv[0])
                              if kv[0] in PHASE_ORDER else 99):
        lines.append("  phase %-9s %s %s" % (name, phase.get("status"),
                                             phase.get("detail", "")))
    for key in ("disco", "imds", "imds_fence", "note"):
        if key in report:
            lines.append("  %s: %s" % (key, report[key]))
    if "nodes" in report:
        lines.append("  nodes: %d joined, %s expected" % (report["joined"],
                                                          report.get("expected_nodes")))
        for n in report["nodes"]:
            lines.append("    %s %s cores=%s" % (n["hostname"], n["address"], n["cores"]))
    return lines
