"""The fourth target: a cluster whose machines are a dict in memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

from imagebake import durations, state
from imagebake.agent_client import AgentClient
from imagebake.errors import ImagebakeError
from imagebake.targets.base import Member, Target
from imagebake.validate import parse_count

MACHINES: dict[str, dict[str, str]] = {}  # cluster name -> host -> "running"/"removed"


@dataclass
class LaunchPlan:
    name: str
    count: int
    ttl_seconds: int | None
    idle_stop: int | None


class FourthTarget(Target):
    name = "fourth"
    launch_options = ("ttl", "idle_stop")
    default_slaves = 2

    def __init__(self, agent: AgentClient | None = None,
                 endpoint: tuple[str, int] | None = ("127.0.0.1", 1)) -> None:
        super().__init__(agent)
        self.endpoint = endpoint
        self.log: list[Any] = []

    def _check_launch(self, name: str, slaves: Any, workers_per_node: Any,
                      options: dict[str, Any]) -> LaunchPlan:
        count = parse_count(self.default_slaves if slaves is None else slaves, "--slaves", 1, 8)
        if name in MACHINES:
            raise ImagebakeError(f"a cluster named {name!r} already exists")
        return LaunchPlan(name, count, durations.ttl_seconds(options.get("ttl")),
                          durations.idle_stop_seconds(options.get("idle_stop")))

    def _launch(self, plan: LaunchPlan, wait: bool) -> dict:
        hosts = [f"node{i:02d}" for i in range(1, plan.count + 1)]
        MACHINES[plan.name] = {h: "running" for h in ["master", *hosts]}
        record = {"name": plan.name, "target": self.name, "token": "ab" * 32,
                  "nodes": [state.node(h) for h in hosts], "idle_stop": plan.idle_stop}
        state.save(record)
        return record

    def _check_grow(self, record: dict, slaves: Any) -> int:
        return parse_count(1 if slaves is None else slaves, "--slaves", 1, 8)

    def _grow(self, record: dict, count: int) -> dict:
        have = len(record["nodes"])
        new = [f"node{i:02d}" for i in range(have + 1, have + count + 1)]
        MACHINES[record["name"]].update({h: "running" for h in new})
        record["nodes"] = record["nodes"] + [state.node(h) for h in new]
        state.save(record)
        return record

    def _destroy(self, name: str, record: dict | None) -> str:
        gone = MACHINES.pop(name, None)
        state.remove(name)
        return f"destroyed {name}" if gone else f"nothing to destroy: {name}"

    def _ssh_argv(self, record: dict, host: str, command: list[str]) -> list[str]:
        return ["sh", "-c", " ".join(command) or "true"]

    def exec(self, record: dict, command: str, user: str = "root",
             stdin: BinaryIO | None = None) -> tuple[int, str]:
        self.log.append(("exec", command))
        return 0, ""

    def exec_argv(self, record: dict, command: str, user: str = "root") -> list[str]:
        self.log.append(("exec_argv", command))
        return ["true"]

    def status(self, record: dict) -> dict:
        machines = MACHINES.get(record["name"], {})
        nodes = [{"hostname": h, "state": machines.get(h, "missing"), "joined": True}
                 for h in state.node_names(record)]
        return {"name": record["name"], "target": self.name, "nodes": nodes,
                "master": {"hostname": "master", "state": machines.get("master", "missing")},
                "ready": all(n["state"] == "running" for n in nodes)}

    def tunnel(self, record: dict) -> str:
        return "no web UI on the fourth target"

    def summary(self, record: dict) -> str:
        return f"cluster {record['name']} (fourth): {len(record['nodes'])} slaves"

    def agent_endpoint(self, record: dict) -> tuple[str, int] | None:
        return self.endpoint

    def remove_members(self, record: dict, chosen: list[Member]) -> str:
        self.log.append(("remove", [m.label for m in chosen]))
        for m in chosen:
            MACHINES.get(record["name"], {})[m.label] = "removed"
        return f"removed {len(chosen)} machine(s)"


TARGET_CLASS = FourthTarget
