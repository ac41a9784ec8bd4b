"""Whether the master agent's verified status reply says the cluster has formed
(the reply comes from imagebake.agent_client, signed both ways)."""

from __future__ import annotations

from ...agent_client import joined_names


def is_ready(reply: dict | None, expected: int) -> bool:
    if not reply:
        return False
    if reply.get("ready") is False:
        return False
    return len(joined_names(reply)) >= expected
