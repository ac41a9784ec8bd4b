"""Local target: a whole Disco cluster as containers on one private Docker network.

The launcher only starts containers and hands each its cluster spec as a
read-only file; the first-boot agent inside (the image's entrypoint) forms
the cluster exactly as it does on EC2.
"""

from __future__ import annotations

import ipaddress
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import durations, files, ports, state
from ...agent import spec as agent_spec
from ...clients import disco as disco_api
from ...clients.docker import docker, ids, image_exists, inspect, require_daemon, used_subnets
from ...errors import ImagebakeError
from ...validate import parse_count
from ..base import Member, Target
from ..local_status import assemble, destroyed, forget, node_hostname
from ..local_status import wait_ready as _wait

LABEL = "imagebake.cluster"
MAX_SLAVES = 64
SPEC_IN_CONTAINER = "/run/imagebake/spec.json"
SUBNET_POOL = ipaddress.ip_network("10.213.0.0/16")
READY_TIMEOUT_BASE = 90.0
READY_TIMEOUT_PER_NODE = 3.0


def container_name(cluster: str, host: str) -> str:
    return f"imagebake-{cluster}-{host}"


# ---------------------------------------------------------------- images
def image_refs() -> dict[str, str]:
    """The baked image per role: build/images.json's docker ids, else :latest tags."""
    from ...bake.records import recorded_images

    recorded = recorded_images("docker")
    refs = {}
    for role in ("master", "node"):
        ref = (recorded.get(role) or {}).get("id")
        refs[role] = ref if ref and image_exists(ref) else f"imagebake/{role}:latest"
    return refs


def ensure_images() -> dict[str, str]:
    refs = image_refs()
    missing = [role for role, ref in refs.items() if not image_exists(ref)]
    if missing:
        print(f"images not baked ({', '.join(missing)}): baking them now with "
              "`invoke bake --target docker`", flush=True)
        from ...bake import build
        from .images import KIND

        build.bake(KIND, only=None, variables={}, force=False)
        refs = image_refs()
        still = [role for role, ref in refs.items() if not image_exists(ref)]
        if still:
            raise ImagebakeError(f"baking did not produce the {', '.join(still)} image")
    return refs


# ---------------------------------------------------------------- network
def pick_subnet() -> ipaddress.IPv4Network:
    taken = [ipaddress.ip_network(s, strict=False) for s in used_subnets() if ":" not in s]
    for candidate in SUBNET_POOL.subnets(new_prefix=24):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise ImagebakeError("no free /24 left in 10.213.0.0/16 for a cluster network: "
                         "destroy an old cluster")


def _hosts(subnet: str) -> tuple[str, str, str]:
    net = ipaddress.ip_network(subnet)
    gateway, master = str(net[1]), str(net[2])
    node_range = str(list(net.subnets(new_prefix=25))[1])  # nodes: the upper half
    return gateway, master, node_range


# ---------------------------------------------------------------- specs
def _spec_dir(name: str) -> Path:
    return state.state_dir() / "clusters" / f"{name}.d"


def _write_spec(name: str, host: str, spec: dict) -> Path:
    return files.write_private(_spec_dir(name) / f"spec-{host}.json", agent_spec.dumps(spec))


def _node_spec(record: dict, host: str) -> dict:
    return agent_spec.make_spec(
        record["name"], "node", master_address=record["master_ip"],
        workers=record.get("workers_per_node"), hostname=host,
        token=record["token"], cookie=record["cookie"],
        disco_port=ports.DISCO, join_port=ports.AGENT, ttl_deadline=record.get("ttl_deadline"),
    )


# ---------------------------------------------------------------- containers
def _run_container(record: dict, host: str, role: str, spec_path: Path, ip: str | None) -> str:
    name = record["name"]
    args = [
        # --init: tini as PID 1 reaps what Disco leaves (a stopped Erlang VM otherwise stays a
        # zombie and `disco stop` spins); the agent is its child.
        "run", "-d", "--init", "--name", container_name(name, host), "--hostname", host,
        "--network", record["network"],
        "--label", f"{LABEL}={name}", "--label", f"imagebake.role={role}",
        "--label", f"imagebake.host={host}",
        "-v", f"{spec_path}:{SPEC_IN_CONTAINER}:ro",
    ]
    if ip:
        args += ["--ip", ip]
    if role == "master":
        # Disco's web UI and API, on the host's loopback only (unauthenticated: any local
        # user of the host can reach it; nothing outside the host can).
        args += ["-p", f"127.0.0.1::{ports.DISCO}"]
    args.append(record["images"][role])
    return docker(*args).strip()


def _start_nodes(record: dict, hosts: list[str]) -> None:
    def start(host: str) -> str:
        path = _write_spec(record["name"], host, _node_spec(record, host))
        return _run_container(record, host, "node", path, None)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(start, hosts))


# ---------------------------------------------------------------- status
def _container(record: dict, host: str) -> dict | None:
    found = inspect(container_name(record["name"], host))
    return found[0] if found else None


def _exec_json(container: str, *argv: str) -> dict | None:
    """JSON printed by a command in the container, whatever its exit code
    (`imagebake-agent status` exits 1 while not ready but still reports)."""
    import subprocess

    try:
        proc = subprocess.run(["docker", "exec", container, *argv], capture_output=True,
                              text=True, timeout=30)
    except subprocess.TimeoutExpired:  # a host so loaded it answers nothing in 30 s
        return None
    out = proc.stdout
    try:
        return json.loads(out) if out.strip() else None
    except ValueError:
        return None


def _agent_status(container: str) -> dict | None:
    return _exec_json(container, "imagebake-agent", "status", "--json")


def _disco_config(container: str) -> dict | None:
    return _exec_json(container, "cat", f"/usr/var/disco/disco_{ports.DISCO}.config")


def disco_source(record: dict) -> str:
    """Where the master image's Disco came from (its `imagebake.disco-source` label):
    'none' for an image baked without Disco."""
    if record.get("disco_source"):
        return record["disco_source"]
    ref = (record.get("images") or {}).get("master", "")
    label = docker("image", "inspect", "--format",
                   '{{ index .Config.Labels "imagebake.disco-source" }}', ref,
                   check=False).strip() if ref else ""
    return label if label and label != "<no value>" else "unknown"


def disco_installed(record: dict) -> bool:
    source = disco_source(record)
    if source == "unknown":  # an image without the label: look inside
        import subprocess

        return subprocess.run(["docker", "exec", container_name(record["name"], "master"),
                               "test", "-x", "/usr/bin/disco"], capture_output=True,
                              timeout=30).returncode == 0
    return source not in disco_api.NO_DISCO


def status(record: dict, per_node: bool = True) -> dict:
    name = record["name"]
    containers = {c["Config"]["Labels"].get("imagebake.host"): c
                  for c in inspect(*ids("container", f"{LABEL}={name}"))}
    states = {host: c["State"]["Status"] for host, c in containers.items()}
    mname = container_name(name, "master")
    running = states.get("master") == "running"
    url = _web_ui(containers.get("master")) if running else None
    return assemble(
        record, states,
        master_state=_agent_status(mname) if running else None,
        config=_disco_config(mname) if running else None,
        agent_status=(lambda h: _agent_status(container_name(name, h))) if per_node else None,
        node_fields=lambda h: {"container": container_name(name, h)},
        master_fields={"container": mname, "web_ui": url},
        disco=(disco_api.view(url, disco_installed(record), disco_source(record)) if running
               else None),
    )


def wait_ready(record: dict, started: float) -> float:
    """Poll the master agent until every running node joined; returns seconds to ready."""
    return _wait(
        record, started, lambda r: status(r, per_node=False),
        timeout=READY_TIMEOUT_BASE + READY_TIMEOUT_PER_NODE * len(record["nodes"]), poll=0.2,
        master_down=lambda report: (
            f"the master container is {report['master']['state']}: "
            f"see `docker logs {container_name(record['name'], 'master')}`"))


def _web_ui(master: dict | None) -> str | None:
    if not master:
        return None
    published = (master.get("NetworkSettings") or {}).get("Ports") or {}
    bound = published.get(f"{ports.DISCO}/tcp") or []
    return f"http://127.0.0.1:{bound[0]['HostPort']}/" if bound else None


# ---------------------------------------------------------------- destroy & access
STOP_TIMEOUT = 30


def stop_disco(name: str) -> str | None:
    """`disco stop` on a running master whose image has Disco; what happened, in words.
    Bounded: a stop that hangs (no init reaping the VM) is reported, then killed."""
    import subprocess

    master = container_name(name, "master")
    found = inspect(master)
    if not found or found[0]["State"]["Status"] != "running":
        return None
    argv = ["docker", "exec", master, "sh", "-c",
            "test -x /usr/bin/disco || exit 3; "
            "disco status 2>/dev/null | grep -q running || exit 4; "
            f"exec timeout -s KILL {STOP_TIMEOUT} disco stop"]
    begun = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=STOP_TIMEOUT + 15)
    except subprocess.TimeoutExpired:
        return f"Disco stop did not return in {STOP_TIMEOUT + 15}s"
    took = time.monotonic() - begun
    if proc.returncode in (3, 4):
        return None
    if proc.returncode != 0:
        last = (proc.stdout + proc.stderr).strip().splitlines() or [f"exit {proc.returncode}"]
        return f"Disco stop failed after {took:.1f}s: {last[-1][:120]}"
    return f"Disco stopped in {took:.1f}s"


def _remove_everything(name: str) -> list[str]:
    removed = []
    label = f"{LABEL}={name}"
    stopped = stop_disco(name)
    if stopped:
        removed.append(stopped)
    containers = ids("container", label)
    if containers:
        docker("rm", "-f", "-v", *containers)
        removed.append(f"{len(containers)} containers")
    for kind in ("network", "volume"):
        found = ids(kind, label)
        if found:
            docker(kind, "rm", *found)
            removed.append(f"{len(found)} {kind}s")
    return removed + forget(name, _spec_dir(name), "spec files")


# ---------------------------------------------------------------- the target
class DockerRecord(state.Record, total=False):
    network: str           # imagebake-<name>, the cluster's private Docker network
    subnet: str
    master_ip: str
    images: dict[str, str]  # role -> image reference
    disco_source: str
    started_at: float
    start_seconds: float
    ready_seconds: float


@dataclass
class LaunchPlan:
    name: str
    count: int
    workers: int | None
    ttl_seconds: int | None = None
    idle_stop: int | None = None


class DockerTarget(Target):
    """A whole cluster as containers on one private Docker network."""

    name = "docker"
    # ttl / idle_stop: enforced by the agents in the containers (docs/agent.md "TTL",
    # "Idle stop"); a container "powers off" by its agent exiting, which stops it.
    launch_options = ("ttl", "idle_stop")

    def _check_launch(self, name: str, slaves: Any, workers_per_node: Any,
                      options: dict[str, Any]) -> LaunchPlan:
        count = parse_count(4 if slaves is None else slaves, "--slaves", 1, MAX_SLAVES)
        workers = None if workers_per_node is None else parse_count(
            workers_per_node, "--workers-per-node", 1, 256)
        ttl_s = durations.ttl_seconds(options.get("ttl"))
        idle_s = durations.idle_stop_seconds(options.get("idle_stop"))
        require_daemon()
        if state.load(name) is not None or ids("container", f"{LABEL}={name}"):
            raise ImagebakeError(f"a cluster named {name!r} already exists: "
                                 f"`invoke destroy --name {name}` or pick another --name")
        return LaunchPlan(name, count, workers, ttl_s, idle_s)

    def _launch(self, plan: LaunchPlan, wait: bool) -> dict:
        name, count, workers = plan.name, plan.count, plan.workers
        refs = ensure_images()
        subnet = pick_subnet()
        gateway, master_ip, node_range = _hosts(str(subnet))
        ttl_deadline = int(time.time()) + plan.ttl_seconds if plan.ttl_seconds else None
        master_spec = agent_spec.make_spec(
            name, "master", workers=workers, master_workers=0, expected_nodes=count,
            hostname="master", disco_port=ports.DISCO, join_port=ports.AGENT,
            ttl_deadline=ttl_deadline, idle_stop=plan.idle_stop,
        )
        master_spec["master"]["address"] = master_ip
        record: DockerRecord = {
            "name": name, "target": "docker", "network": f"imagebake-{name}",
            "subnet": str(subnet), "master_ip": master_ip, "images": refs,
            "token": master_spec["token"], "cookie": master_spec["cookie"],
            "launcher_key": master_spec["launcher_key"],
            "workers_per_node": workers, "ttl_deadline": ttl_deadline,
            "idle_stop": plan.idle_stop,
            "nodes": [state.node(node_hostname(i)) for i in range(1, count + 1)],
        }
        record["disco_source"] = disco_source(record)
        state.save(record)  # first: `destroy` finds a half-finished launch
        try:
            docker("network", "create", "--label", f"{LABEL}={name}", "--subnet", str(subnet),
                   "--gateway", gateway, "--ip-range", node_range, record["network"])
            master_path = _write_spec(name, "master", master_spec)
            begun = time.time()
            _run_container(record, "master", "master", master_path, master_ip)
            _start_nodes(record, state.node_names(record))
            started = time.time()  # every container is running from here on
            record["started_at"] = started
            record["start_seconds"] = round(started - begun, 2)
            state.save(record)
        except BaseException:
            print("launch failed: removing what was created", flush=True)
            _remove_everything(name)
            raise
        if wait:
            record["ready_seconds"] = wait_ready(record, started)
            state.save(record)
        return record

    def _check_grow(self, record: dict, slaves: Any) -> int:
        count = parse_count(1 if slaves is None else slaves, "--slaves", 1, MAX_SLAVES)
        require_daemon()
        have = len(record["nodes"])
        if have + count > MAX_SLAVES:
            raise ImagebakeError(f"a cluster holds at most {MAX_SLAVES} slaves ({have} now)")
        master = _container(record, "master")
        if not master or master["State"]["Status"] != "running":
            raise ImagebakeError(f"the master of {record['name']!r} is not running: cannot grow")
        return count

    def _grow(self, record: dict, count: int) -> dict:
        # after the highest name in use: a shrink may have left gaps (node02 gone)
        have = max([int(n[4:]) for n in state.node_names(record) if n[4:].isdigit()] or [0])
        new = [node_hostname(i) for i in range(have + 1, have + count + 1)]
        record["nodes"] = record["nodes"] + [state.node(n) for n in new]
        state.save(record)
        _start_nodes(record, new)
        started = time.time()
        record["ready_seconds"] = wait_ready(record, started)
        state.save(record)
        return record

    def image_kind(self) -> Any:
        from .images import KIND

        return KIND

    def build_base_image(self) -> str:
        from .images import build_base

        return build_base()

    def list_images(self, region: str | None = None, profile: str | None = None) -> list[dict]:
        from ...bake import images

        return images.list_docker()

    def prune_images(self, keep: int, dry_run: bool = False, region: str | None = None,
                     profile: str | None = None, only_ids: set[str] | None = None
                     ) -> tuple[list[dict], list[dict]]:
        from ...bake import images

        return images.prune_docker(keep, dry_run, only_ids)

    def verify_images(self, ami: str | None = None, host: str | None = None) -> int:
        if ami or host:
            raise ImagebakeError("--ami and --host are for --target aws")
        from ...bake import verify

        return verify.verify_docker()

    def remove_members(self, record: dict, chosen: list[Member]) -> str:
        names = [container_name(record["name"], m.label) for m in chosen]
        docker("rm", "-f", "-v", *names, check=False)
        for m in chosen:
            (_spec_dir(record["name"]) / f"spec-{m.label}.json").unlink(missing_ok=True)
        return f"removed {len(names)} container(s)"

    def check_destroy(self, name: str) -> str:
        name = super().check_destroy(name)
        require_daemon()
        return name

    def _destroy(self, name: str, record: dict | None) -> str:
        return destroyed(name, _remove_everything(name), "local")

    def _ssh_argv(self, record: dict, host: str, command: list[str]) -> list[str]:
        import sys

        tty = ["-t"] if sys.stdin.isatty() else []
        argv = ["docker", "exec", "-i", *tty, container_name(record["name"], host),
                "su", "-", "disco"]
        return argv + (["-c", " ".join(command)] if command else [])

    def exec_argv(self, record: dict, command: str, user: str = "root") -> list[str]:
        """docker exec in the master container, as USER (a login shell for non-root)."""
        argv = ["docker", "exec", "-i", container_name(record["name"], "master")]
        if user == "root":
            return argv + ["sh", "-c", command]
        return argv + ["su", "-", user, "-c", command]

    def status(self, record: dict) -> dict:
        return status(record)

    def agent_endpoint(self, record: dict) -> tuple[str, int] | None:
        """The master container's join port on the cluster network (routed from the host)."""
        master = _container(record, "master")
        if not master or master["State"]["Status"] != "running":
            return None
        return record["master_ip"], ports.AGENT

    def tunnel(self, record: dict) -> str:
        url = _web_ui(_container(record, "master"))
        if not url:
            raise ImagebakeError(f"the master of {record['name']!r} is not running")
        if not disco_installed(record):
            raise ImagebakeError(f"cluster {record['name']!r}: Disco "
                                 f"{disco_api.absent(disco_source(record))}: there is no web UI")
        code, _ = disco_api.get(url, "/")
        if code != 200:
            raise ImagebakeError(f"Disco's web UI at {url} answers {code or 'nothing'} "
                                 f"(`invoke status --name {record['name']}`)")
        return (f"Disco web UI: {url} (HTTP 200; host loopback only, unauthenticated: "
                "any local user of this host can reach it)")

    def summary(self, record: dict) -> str:
        lines = [
            f"cluster {record['name']} (docker): master {record['master_ip']}, "
            f"{len(record['nodes'])} slaves ({', '.join(state.node_names(record))})",
        ]
        url = _web_ui(_container(record, "master"))
        if url:
            lines.append(f"web UI: {url}")
        if record.get("ready_seconds") is not None:
            lines.append(f"containers started in {record.get('start_seconds', '?')}s; cluster "
                         f"ready {record['ready_seconds']}s after that")
        else:
            lines.append("not waited for: `invoke status` tells when it is ready")
        return "\n".join(lines)


TARGET_CLASS = DockerTarget
