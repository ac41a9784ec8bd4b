"""What "ready" means for a cluster, launcher side: the one definition every target's
status and launch wait use (docker and qemu through local_status.assemble, aws through
report.status_report and its launch wait). What the master agent's reply must say is
the agent's own rule (imagebake.agent.ready.is_ready), imported, not restated."""

from __future__ import annotations

from collections.abc import Iterable

from ..agent import ready as agent_ready


def cluster_ready(*, master_running: bool, nodes: Iterable[dict] | None = None,
                  reply: dict | None = None, expected: int | None = None,
                  every_node: bool = False) -> bool:
    """Ready: the master runs; of NODES (each {"state", "joined", "usable"}), at least one
    runs (with EVERY_NODE: all of them), and every running one has joined the master
    agent and is usable (in Disco's config and, where the images carry Disco, connected
    in Disco: "usable", default true; a dead node is reported missing, not waited for);
    with EXPECTED, the master agent's signed status REPLY lists at least that many
    joined nodes and does not itself say it is not ready."""
    if not master_running:
        return False
    if nodes is not None:
        nodes = list(nodes)
        running = [n for n in nodes if n.get("state") == "running"]
        if not running or (every_node and len(running) < len(nodes)):
            return False
        if not all(n.get("joined") and n.get("usable", True) for n in running):
            return False
    return expected is None or agent_ready.is_ready(reply, expected)
