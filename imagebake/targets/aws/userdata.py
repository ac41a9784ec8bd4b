"""EC2 user data: the first-boot agent's spec for one role, as JSON."""

from __future__ import annotations

from ... import ports
from ...agent import spec as agent_spec
from ...errors import ImagebakeError

MAX_USER_DATA = 16 * 1024  # EC2's limit, before base64
ERLANG_PORTS = (30000, 30063)


def master_spec(cluster: str, slaves: int, workers: int | None,
                ttl_deadline: int | None, idle_stop: int | None = None) -> dict:
    """The master's spec; it makes the cluster's token and cookie (once). IDLE_STOP
    (seconds): the master agent stops the whole cluster after that long without a job."""
    return agent_spec.make_spec(
        cluster, "master", workers=workers, master_workers=0, expected_nodes=slaves,
        ttl_deadline=ttl_deadline, disco_port=ports.DISCO, join_port=ports.AGENT,
        erlang_ports=ERLANG_PORTS, hostname="master", idle_stop=idle_stop)


def node_spec(record: dict) -> dict:
    """A node's spec: the record's token, cookie and master address (launch and grow)."""
    return agent_spec.make_spec(
        record["name"], "node", master_address=record["master"]["private_ip"],
        workers=record.get("workers_per_node"), master_workers=0,
        expected_nodes=0, ttl_deadline=record.get("ttl_deadline"),
        disco_port=ports.DISCO, join_port=ports.AGENT, erlang_ports=ERLANG_PORTS,
        token=record["token"], cookie=record["cookie"])


def render(spec: dict) -> str:
    """The user data text; refuses anything too large or carrying a private key."""
    text = agent_spec.dumps(spec)
    if "PRIVATE KEY" in text:
        raise ImagebakeError("internal error: user data would carry a private key; not launching")
    if len(text.encode("utf-8")) >= MAX_USER_DATA:
        raise ImagebakeError(
            f"internal error: user data is {len(text)} bytes, EC2 allows < {MAX_USER_DATA}")
    return text
