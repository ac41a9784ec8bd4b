"""How many EC2 API calls a launch makes for 1, 4 and 32 slaves (goal: N=32/N=1 <= 1.2).

Runs against a moto server started here on 127.0.0.1 (no AWS account, no network);
calls are counted with botocore's ``before-call.ec2.*`` hook on the session the
launch code uses, handed in through its ``session_factory``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from rich.console import Console
from rich.table import Table

from ..agent_client import AgentClient

SIZES = (1, 4, 32)
REGION = "us-east-1"
GOAL = 1.2


class CallCounter:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def _hook(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def factory(self, region: str | None, profile: str | None) -> boto3.Session:
        session = boto3.Session(region_name=region, profile_name=profile)
        session.events.register("before-call.ec2.*", self._hook)
        return session

    def take(self) -> Counter[str]:
        out, self.calls = self.calls, Counter()
        return out


class _ReadyAtOnce(AgentClient):
    """The master agent as moto cannot run it (no user data): every node joined at
    once, and a leave removes what it names."""

    def status(self, address: str, port: int, record: dict, timeout: float = 0) -> dict:
        nodes = [{"hostname": f"node{i}", "address": n["private_ip"]}
                 for i, n in enumerate(record["nodes"], 1)]
        return {"ready": True, "joined": len(nodes), "expected_nodes": len(nodes),
                "nodes": nodes}

    def leave(self, address: str, port: int, record: dict, hostnames: list[str]) -> dict:
        return {"removed": hostnames, "unknown": []}


@contextlib.contextmanager
def _moto_env() -> Iterator[Path]:
    """A moto server on 127.0.0.1 and an environment pointing boto3 and imagebake at it."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="imagebake-bench-") as tmp:
        os.environ.update({
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.path.join(tmp, "none"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(tmp, "none"),
            "IMAGEBAKE_STATE_DIR": os.path.join(tmp, "state"),
            "IMAGEBAKE_IMAGES_JSON": os.path.join(tmp, "images.json"),
        })
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
            os.environ.pop(var, None)
        try:
            yield Path(tmp)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            server.stop()


def _register_amis(images_json: Path) -> None:
    client = boto3.client("ec2", region_name=REGION)
    out = {}
    for role in ("master", "node"):
        image = client.register_image(
            Name=f"imagebake-{role}-bench", RootDeviceName="/dev/sda1",
            Architecture="x86_64", VirtualizationType="hvm",
            BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}],
        )["ImageId"]
        client.create_tags(Resources=[image], Tags=[{"Key": "imagebake:role", "Value": role}])
        out[role] = {"id": image, "region": REGION}
    images_json.write_text(json.dumps({"aws": out}))


def _shrink(target: Any, record: dict) -> dict:
    """`shrink` of every slave but DDFS's 3 (one when fewer remain impossible: N=1 has
    nothing to remove): its EC2 calls, Disco and the master agent stubbed."""
    from .. import shrink, state

    have = len(record["nodes"])
    count = have - 3 if have > 3 else 0
    if count <= 0:
        return {"shrink_removed": 0, "shrink_calls": None, "shrink_by_operation": {}}
    listed: list[str] = []

    def disco(batch: list) -> list:
        listed.extend(body for _, path, body in batch if path == "/disco/ctrl/gc_blacklist")
        return [(200, json.dumps(listed) if path.endswith("safe_gc_blacklist") else '""')
                for _, path, _ in batch]

    shrink.shrink(target, state.load(record["name"]), slaves=count, calls=disco,
                  say=lambda s: None, progress=lambda t, done: None)
    calls = target.session_factory.__self__.take()
    record.update(state.load(record["name"]))
    return {"shrink_removed": count, "shrink_calls": sum(calls.values()),
            "shrink_by_operation": dict(sorted(calls.items()))}


def run(sizes: tuple[int, ...] = SIZES, quiet: bool = False) -> dict:
    """Launch (waiting, readiness stubbed) and destroy at each size; count EC2 calls."""
    from ..targets.aws.cluster import AwsTarget

    counter = CallCounter()
    results: dict[int, dict[str, Any]] = {}
    with _moto_env() as tmp:
        _register_amis(tmp / "images.json")
        for n in sizes:
            name = f"bench{n}"
            started = time.monotonic()
            target = AwsTarget(session_factory=counter.factory, agent=_ReadyAtOnce(),
                               progress=False)
            record = target.launch(name=name, slaves=n, wait=True, allow_cidr="203.0.113.7/32")
            launch_calls = counter.take()
            launch_seconds = time.monotonic() - started
            shrink_calls = _shrink(target, record)
            counter.take()  # nothing else is counted as shrink's
            target.destroy(name, record)
            destroy_calls = counter.take()
            results[n] = {
                "launch_calls": sum(launch_calls.values()),
                "destroy_calls": sum(destroy_calls.values()),
                "launch_by_operation": dict(sorted(launch_calls.items())),
                "destroy_by_operation": dict(sorted(destroy_calls.items())),
                "launch_seconds": round(launch_seconds, 2),
                **shrink_calls,
            }
    first, last = results[sizes[0]], results[sizes[-1]]
    ratio = last["launch_calls"] / first["launch_calls"]
    report = {"sizes": list(sizes), "results": results,
              "ratio": round(ratio, 3), "goal": GOAL, "ok": ratio <= GOAL}
    if not quiet:
        _print(report)
    return report


def _print(report: dict) -> None:
    sizes = report["sizes"]
    results = report["results"]
    table = Table(title="EC2 API calls per launch (moto, readiness stubbed)")
    table.add_column("operation")
    for n in sizes:
        table.add_column(f"N={n}", justify="right")
    ops = sorted({op for r in results.values() for op in r["launch_by_operation"]})
    for op in ops:
        table.add_row(op, *(str(results[n]["launch_by_operation"].get(op, 0)) for n in sizes))
    table.add_row("[bold]launch total", *(f"[bold]{results[n]['launch_calls']}" for n in sizes))
    table.add_row("shrink total (slaves removed)", *(
        f"{results[n]['shrink_calls']} ({results[n]['shrink_removed']})"
        if results[n]["shrink_calls"] is not None else "- (0)" for n in sizes))
    table.add_row("destroy total", *(str(results[n]["destroy_calls"]) for n in sizes))
    table.add_row("launch seconds", *(f"{results[n]['launch_seconds']:.2f}" for n in sizes))
    console = Console()
    console.print(table)
    verdict = "ok" if report["ok"] else "OVER GOAL"
    console.print(f"ratio N={sizes[-1]}/N={sizes[0]}: {report['ratio']:.2f} "
                  f"(goal <= {report['goal']}): {verdict}")


if __name__ == "__main__":
    run()
