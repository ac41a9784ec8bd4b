"""`invoke bench`: benchmarks that print figures (never timed assertions).

bake    full local bake of both roles vs re-bake with unchanged inputs (skip)
cluster time from containers started to ready for N = 4 and 16, side by side: images
        without Disco, with Disco, and the floor of Disco's slave:start over ssh
launch  EC2 API calls for N = 1, 4, 32 against moto (launch_calls.py)
vm      QEMU bake/boot figures (vm.py)
dns     DNS queries at the master's dnsmasq during a >= 60 s Disco job (disco_bench.py)
job     ddfs-load vs docker cp, the 2-gram job at N = 1, 2, 4, first job at N = 4 vs 16
all     bake, cluster and launch, plus time to ready for N = 1, 2, 4, 8, 16 and its
        plot: build/bench.json, and the README's figure docs/bench-ready.png
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .. import targets
from ..errors import ImagebakeError

ROOT = Path(__file__).resolve().parents[2]
OUT = Path("build")
FIGURE = ROOT / "docs" / "bench-ready.png"  # the README shows it


def machine() -> dict:
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1), "cpu": cpu,
            "kernel": platform.release()}


def bench_bake() -> dict:
    from .. import targets

    variables = {"disco_source": "none"}
    t0 = time.monotonic()
    targets.get("docker").bake(only=None, variables=variables, force=True)
    full = time.monotonic() - t0
    t0 = time.monotonic()
    targets.get("docker").bake(only=None, variables=variables, force=False)
    again = time.monotonic() - t0
    result = {"full_bake_s": round(full, 2), "rebake_unchanged_s": round(again, 2),
              "ratio": round(again / full, 4)}
    print(f"bake: full {full:.1f}s, re-bake with unchanged inputs {again:.2f}s, "
          f"ratio {result['ratio']:.2%} (goal <= 5%)")
    return result


def _master_peak_kib(name: str) -> int | None:
    from ..targets.docker.cluster import container_name

    # PID 1 is tini (`docker run --init`); the agent is its first child.
    script = 'grep VmHWM "/proc/$(cut -d" " -f1 /proc/1/task/1/children)/status"'
    out = subprocess.run(["docker", "exec", container_name(name, "master"), "sh", "-c", script],
                         capture_output=True, text=True).stdout.split()
    return int(out[1]) if len(out) >= 2 else None


@contextmanager
def _env(name: str, value: str | None):
    """os.environ[NAME] = VALUE inside the block (VALUE None: unset), restored after."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


# The floor of Disco's part of "ready": the master's Erlang VM starts one VM per node with
# slave:start over ssh, all at once, exactly as Disco's node_mon does (same program: the
# DISCO_ERLANG of settings.py; same -rsh ssh, same +K/-connect_all), in the same containers,
# timed from the first call to the last node up. What Disco adds on top per node (its
# ddfs_node, temp_gc and lock_server, node_ready) is not in it.
FLOOR_EVAL = """Prog = %s, Hosts = [%s], Self = self(), T0 = erlang:monotonic_time(millisecond),
[spawn(fun() -> Res = slave:start(Host, imagebake_floor, "+K true -connect_all false", Self,
  Prog), Self ! {floor, Host, Res, erlang:monotonic_time(millisecond) - T0} end)
 || Host <- Hosts],
Got = [receive {floor, Host, Res, Ms} -> {Host, Res, Ms}
       after 120000 -> {Host, {error, no_answer}, -1} end || Host <- Hosts],
Total = erlang:monotonic_time(millisecond) - T0,
[io:format("floor ~s ~p ~p~n", [Host, element(1, Res), Ms]) || {Host, Res, Ms} <- Got],
io:format("floor_total ~p~n", [Total]),
[slave:stop(Node) || {_, {ok, Node}, _} <- Got],
halt()."""


def _erl_string(text: str) -> str:
    return json.dumps(text)  # ASCII without control characters: the same literal in Erlang


def slave_floor(name: str, hosts: list[str]) -> dict:
    """Stop Disco in cluster NAME, then start one slave VM per host at once from the
    master, as Disco does; {"floor_s", "per_node_s", "failed"}."""
    import ast

    from ..targets.docker.cluster import container_name, stop_disco

    master = container_name(name, "master")
    stop_disco(name)
    line = subprocess.run(["docker", "exec", master, "grep", "^DISCO_ERLANG",
                           "/etc/disco/settings.py"], capture_output=True, text=True,
                          timeout=60).stdout.strip()
    prog = ast.literal_eval(line.split("=", 1)[1].strip()) if "=" in line else "erl"
    code = FLOOR_EVAL % (_erl_string(prog), ", ".join(_erl_string(h) for h in hosts))
    proc = subprocess.run(["docker", "exec", "-u", "disco", "-e", "HOME=/home/disco",
                           "-w", "/home/disco", master, "erl", "-sname", "imagebake_floor_m",
                           "-rsh", "ssh", "-connect_all", "false", "-noshell", "-eval", code],
                          capture_output=True, text=True, timeout=300)
    found = parse_floor(proc.stdout, hosts)
    if found is None:
        raise ImagebakeError(f"the slave:start floor did not run in {name}: "
                             f"{(proc.stdout + proc.stderr).strip()[-300:]}")
    return found


def parse_floor(out: str, hosts: list[str]) -> dict | None:
    """FLOOR_EVAL's output: {"floor_s", "per_node_s", "failed"}; None unless every host
    and the total are in it."""
    per_node, failed, total = {}, [], None
    for row in out.splitlines():
        parts = row.split()
        if parts[:1] == ["floor"] and len(parts) == 4 and parts[1] in hosts:
            per_node[parts[1]] = int(parts[3]) / 1000
            if parts[2] != "ok":
                failed.append(parts[1])
        elif parts[:1] == ["floor_total"] and len(parts) == 2:
            total = int(parts[1]) / 1000
    if total is None or len(per_node) != len(hosts):
        return None
    return {"floor_s": round(total, 2), "per_node_s": per_node, "failed": failed}


def _ready_times(sizes: list[int], images_json: str | None = None, floor: bool = False,
                 tag: str = "") -> dict[int, dict]:
    """Launch one cluster per size (one after the other), measure, destroy. IMAGES_JSON:
    launch the images recorded there (default: build/images.json); FLOOR: then time the
    slave:start floor in the same containers (images with Disco)."""
    from .. import state

    docker = targets.get("docker")

    results = {}
    with tempfile.TemporaryDirectory() as tmp, _env("IMAGEBAKE_STATE_DIR", tmp), \
            _env("IMAGEBAKE_IMAGES_JSON", images_json or os.environ.get("IMAGEBAKE_IMAGES_JSON")):
        for n in sizes:
            # unique per run: other people's benchmarks share the Docker daemon
            name = f"bench{os.getpid()}{tag}{n}"
            try:
                record = docker.launch(name=name, slaves=n, wait=True)
                results[n] = {"ready_s": record["ready_seconds"],
                              "start_s": record["start_seconds"],
                              "master_peak_kib": _master_peak_kib(name)}
                if floor:
                    results[n].update(slave_floor(name, state.node_names(record)))
            finally:
                _keep_logs(name)
                docker.destroy(name, state.load(name))
    return results


def _keep_logs(name: str) -> None:
    """IMAGEBAKE_BENCH_LOGS=DIR: keep the master agent's log and Disco's console.log of
    cluster NAME there before it is destroyed (where did the time go)."""
    folder = os.environ.get("IMAGEBAKE_BENCH_LOGS")
    if not folder:
        return
    from ..targets.docker.cluster import container_name

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    master = container_name(name, "master")
    for suffix, argv in (("agent", ["docker", "logs", "-t", master]),
                         ("disco", ["docker", "exec", master, "cat",
                                    "/usr/var/disco/log/console.log"])):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        (out / f"{name}-{suffix}.log").write_text(proc.stdout + proc.stderr)


NODISCO_IMAGES = Path("build") / "images-nodisco.json"


def _nodisco_images() -> str:
    """An images.json of images baked with disco_source=none: IMAGEBAKE_BENCH_NODISCO_IMAGES
    as it is (e.g. the images of an older commit, to compare), else
    build/images-nodisco.json, baked here from this tree (an unchanged bake is skipped)."""
    from ..bake import build
    from ..targets.docker.images import KIND

    given = os.environ.get("IMAGEBAKE_BENCH_NODISCO_IMAGES")
    if given:
        if not Path(given).is_file():
            raise ImagebakeError(f"IMAGEBAKE_BENCH_NODISCO_IMAGES={given}: no such file")
        return str(Path(given).resolve())
    path = str(NODISCO_IMAGES.resolve())
    with _env("IMAGEBAKE_IMAGES_JSON", path):
        build.bake(KIND, only=None, variables={"disco_source": "none"}, force=False)
    return path


def _with_disco() -> bool:
    from ..bake.records import recorded_images
    from ..clients.disco import NO_DISCO

    master = recorded_images("docker").get("master") or {}
    return bool(master) and master.get("disco_source") not in NO_DISCO


def _print_ready(kind: str, n: int, r: dict) -> None:
    failed = f" (failed: {', '.join(r['failed'])})" if r.get("failed") else ""
    floor = f"; slave:start floor {r['floor_s']:.2f}s{failed}" if "floor_s" in r else ""
    load = os.getloadavg()[0]
    print(f"cluster N={n:>2} {kind.replace('_', ' ')}: containers started in "
          f"{r['start_s']:.2f}s, then ready in {r['ready_s']:.2f}s{floor}; master agent peak "
          f"RSS {r['master_peak_kib']} KiB; load {load:.1f}", flush=True)


def bench_cluster(sizes=(4, 16)) -> dict:
    """Containers running -> ready, N = 4 and 16, side by side in one run: images without
    Disco, images with Disco (ready = every slave connected in Disco), and the floor of
    Disco's part (slave:start of N VMs over ssh at once, in that cluster's containers)."""
    lo, hi = min(sizes), max(sizes)
    load = os.getloadavg()
    print(f"cluster: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start",
          flush=True)
    nodisco_json = _nodisco_images()
    disco = _with_disco()
    if not disco:
        print("cluster: build/images.json holds images without Disco: the with-Disco rows "
              "and the floor are left out (bake with Disco first)")
    out: dict = {"without_disco": {}, "with_disco": {}}
    for n in sizes:  # interleaved, so a change in the host's load hits both alike
        for kind in ("without_disco", "with_disco") if disco else ("without_disco",):
            got = (_ready_times([n], nodisco_json, tag="n") if kind == "without_disco"
                   else _ready_times([n], None, floor=True, tag="d"))
            out[kind].update(got)
            _print_ready(kind, n, got[n])
    result: dict = {"load_average": [round(x, 2) for x in load]}
    for kind in ("without_disco", "with_disco"):
        times = out[kind]
        if not times:
            continue
        ratio = times[hi]["ready_s"] / times[lo]["ready_s"]
        result[kind] = {"by_n": {str(k): v for k, v in times.items()}, "ratio": round(ratio, 3)}
        print(f"cluster {kind.replace('_', ' ')}: ready({hi})/ready({lo}) = {ratio:.2f}")
        if kind == "with_disco":
            floor = times[hi]["floor_s"] / times[lo]["floor_s"]
            result[kind]["floor_ratio"] = round(floor, 3)
            print(f"cluster floor: slave:start({hi})/slave:start({lo}) = {floor:.2f}")
    load = os.getloadavg()
    print(f"cluster: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    result["load_average_end"] = [round(x, 2) for x in load]
    # what `all` and older readers of build/bench.json expect: the images it launched
    main = result.get("with_disco") or result.get("without_disco") or {}
    result["by_n"], result["ratio"] = main.get("by_n"), main.get("ratio")
    return result


def _optional(module: str) -> dict:
    try:
        mod = importlib.import_module(f"{__package__}.{module}")
    except ImportError as exc:
        raise ImagebakeError(f"benchmark {module} is not available: {exc}") from None
    return mod.run()


def plot(by_n: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(int(n) for n in by_n)
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(ns, [by_n[str(n)]["ready_s"] for n in ns], marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("slaves (local Docker target)")
    ax.set_ylabel("seconds to ready")
    ax.set_title("imagebake: containers started -> cluster ready")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def run(what: str = "all") -> dict:
    choices = ("bake", "cluster", "launch", "vm", "dns", "job", "all")
    if what not in choices:
        raise ImagebakeError(f"unknown benchmark {what!r}: choose one of {', '.join(choices)}")
    report: dict = {"machine": machine(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if what in ("bake", "all"):
        report["bake"] = bench_bake()
    if what in ("cluster", "all"):
        report["cluster"] = bench_cluster()
    if what in ("launch", "all"):
        report["launch"] = _optional("launch_calls")
    if what == "vm":
        report["vm"] = _optional("vm")
    if what in ("dns", "job"):  # real Disco: not part of `all` (minutes, >= 200 MB)
        from . import disco_bench

        report[what] = disco_bench.run(what)
        OUT.mkdir(exist_ok=True)
        (OUT / f"bench-{what}.json").write_text(json.dumps(report, indent=2) + "\n")
    if what == "all":
        curve = _ready_times([1, 2, 4, 8, 16])
        report["ready_curve"] = {str(k): v for k, v in curve.items()}
        OUT.mkdir(exist_ok=True)
        plot(report["ready_curve"], FIGURE)
        print("time to ready: " + ", ".join(f"N={n}: {v['ready_s']:.2f}s"
                                            for n, v in curve.items()))
        (OUT / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {OUT / 'bench.json'} and {FIGURE.relative_to(ROOT)} (the README's figure)")
    return report
