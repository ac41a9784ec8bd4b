"""What "ready" means, decided once: the agent's `status`, the master's signed status
reply and the launcher (which imports this module) all ask these functions.

A cluster is ready when its master finished its boot (through the `disco` phase) and
at least the expected number of nodes joined it; a node is ready when every boot
phase it ran succeeded, through `disco`.
"""

LAST_PHASE = "disco"


def joined_names(report):
    """Host names of the nodes a master's report lists as joined (a list of entries
    with "hostname", or a dict keyed by host name)."""
    members = (report or {}).get("nodes") or {}
    if isinstance(members, dict):
        return set(str(k) for k in members)
    return set(str(m.get("hostname")) for m in members if isinstance(m, dict))


def enough_joined(joined, expected):
    """The membership rule: at least EXPECTED nodes joined."""
    return joined >= int(expected or 0)


def phases_done(phases):
    """Every recorded boot phase succeeded, through the last one."""
    return (bool(phases) and LAST_PHASE in phases
            and all(p.get("status") == "ok" for p in phases.values()))


def master_ready(phases, joined, expected):
    """The master's own view (its state file and registry)."""
    return (phases.get(LAST_PHASE, {}).get("status") == "ok"
            and enough_joined(joined, expected))


def node_ready(phases):
    return phases_done(phases)


def is_ready(reply, expected):
    """The launcher's view: the master's verified status reply says ready, and at least
    EXPECTED nodes (the ones the launcher started and still sees running) joined."""
    if not reply:
        return False
    if reply.get("ready") is False:
        return False
    return enough_joined(len(joined_names(reply)), expected)
