"""`invoke bench`: benchmarks that print figures (never timed assertions).

bake    full local bake of both roles vs re-bake with unchanged inputs (skip)
cluster time from containers started to ready for N = 4 and 16, side by side
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


def _ready_times(sizes: list[int]) -> dict[int, dict]:
    """Launch one cluster per size (one after the other), measure, destroy."""
    from .. import state

    docker = targets.get("docker")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("IMAGEBAKE_STATE_DIR")
        os.environ["IMAGEBAKE_STATE_DIR"] = tmp
        try:
            for n in sizes:
                name = f"bench{n}"
                try:
                    record = docker.launch(name=name, slaves=n, wait=True)
                    results[n] = {"ready_s": record["ready_seconds"],
                                  "start_s": record["start_seconds"],
                                  "master_peak_kib": _master_peak_kib(name)}
                finally:
                    docker.destroy(name, state.load(name))
        finally:
            if old is None:
                os.environ.pop("IMAGEBAKE_STATE_DIR", None)
            else:
                os.environ["IMAGEBAKE_STATE_DIR"] = old
    return results


def bench_cluster(sizes=(4, 16)) -> dict:
    times = _ready_times(list(sizes))
    for n, r in times.items():
        print(f"cluster N={n:>2}: containers started in {r['start_s']:.2f}s, then ready in "
              f"{r['ready_s']:.2f}s; master agent peak RSS {r['master_peak_kib']} KiB")
    lo, hi = min(sizes), max(sizes)
    ratio = times[hi]["ready_s"] / times[lo]["ready_s"]
    print(f"cluster: ready({hi})/ready({lo}) = {ratio:.2f} (goal <= 1.5)")
    return {"by_n": {str(k): v for k, v in times.items()}, "ratio": round(ratio, 3)}


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
