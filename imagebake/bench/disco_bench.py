"""`invoke bench --what dns` and `--what job`: figures of real Disco on the local target.

dns  4 slaves; the master's dnsmasq is restarted with --log-queries into a file (the
     cluster's own resolver, same config); a Disco job of >= 60 s runs on all slaves;
     every query dnsmasq saw is counted by asker, answered locally (hosts table, cache,
     domain-needed) or forwarded upstream, per machine-minute.
job  generated 2-gram samples (Google Books 2009 format): `invoke ddfs-load`'s rate,
     counting every replica, beside `docker cp` of the same bytes into the master (ratio),
     for one large file, many small ones and the large one fetched by the slaves over http;
     the laptop's peak RSS at 50 vs 500 MB; the 2-gram top-K job's wall time at N = 1, 2, 4
     slaves over the blobs and over the chunk format (bench_job).

Clusters are made in a private state directory and destroyed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from .. import state, targets
from ..disco import ddfs_load, jobs, smoke
from ..errors import ImagebakeError
from ..targets.docker.cluster import container_name

PROBE = Path(__file__).resolve().parents[1] / "disco" / "probe_job.py"
DNS_LOG = "/tmp/imagebake-bench-dnsmasq.log"
MB = 1_000_000


@contextlib.contextmanager
def cluster(name: str, slaves: int, wait: bool = True):
    """A docker cluster in a private state directory, destroyed on the way out."""
    docker = targets.get("docker")
    old = os.environ.get("IMAGEBAKE_STATE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["IMAGEBAKE_STATE_DIR"] = tmp
        try:
            record = docker.launch(name=name, slaves=slaves, wait=wait)
            yield docker, record
        finally:
            docker.destroy(name, state.load(name))
            if old is None:
                os.environ.pop("IMAGEBAKE_STATE_DIR", None)
            else:
                os.environ["IMAGEBAKE_STATE_DIR"] = old


def _require_disco(docker, record) -> None:
    from ..targets.docker.cluster import disco_installed

    if not disco_installed(record):
        raise ImagebakeError("the baked images carry no Disco (disco_source=none): these "
                             "benchmarks need it; make the archives with `vendor/refresh.sh "
                             "make` (needs GitHub) and `invoke bake`")


# ---------------------------------------------------------------- dns
def count_dns(log: str, names: dict[str, str]) -> dict[str, dict[str, int]]:
    """asker -> {queries, forwarded, local} from a dnsmasq --log-queries log. A query
    line is `query[A] NAME from IP`; a forward is `forwarded NAME to SERVER` (attributed
    to the last asker of NAME)."""
    counts: dict[str, dict[str, int]] = {}
    last_asker: dict[str, str] = {}
    for line in log.splitlines():
        m = re.search(r"query\[\w+\] (\S+) from (\S+)", line)
        if m:
            who = names.get(m.group(2), m.group(2))
            last_asker[m.group(1)] = who
            counts.setdefault(who, {"queries": 0, "forwarded": 0, "local": 0})["queries"] += 1
            continue
        m = re.search(r"forwarded (\S+) to (\S+)", line)
        if m:
            who = last_asker.get(m.group(1), "?")
            counts.setdefault(who, {"queries": 0, "forwarded": 0, "local": 0})["forwarded"] += 1
    for entry in counts.values():
        entry["local"] = entry["queries"] - entry["forwarded"]
    return counts


def bench_dns(slaves: int = 4, seconds: float = 60.0) -> dict:
    with cluster("benchdns", slaves) as (docker, record):
        _require_disco(docker, record)
        master = container_name(record["name"], "master")
        subprocess.run(["docker", "exec", master, "sh", "-c",
                        "kill $(pidof dnsmasq); sleep 0.5; dnsmasq --conf-file=/etc/dnsmasq.conf "
                        f"--log-queries --log-facility={DNS_LOG}"], check=True,
                       capture_output=True)
        workers = 2 * slaves * 2  # tasks: each slave's slots filled twice over
        per_task = seconds / 2
        began = time.monotonic()
        run = jobs.run_script(docker, record, PROBE, ["hosts", str(workers), str(per_task)],
                              timeout=int(seconds * 4))
        minutes = (time.monotonic() - began) / 60
        if not run.ok:
            raise ImagebakeError(f"dns benchmark: {run.reason}")
        log = subprocess.run(["docker", "exec", master, "cat", DNS_LOG], capture_output=True,
                             text=True).stdout
        report = docker.status(record)
        names = {n["address"]: n["hostname"] for n in report["nodes"] if n["address"]}
        names.update({"127.0.0.1": "master", record["master_ip"]: "master"})
        counts = count_dns(log, names)
        asked = sorted({m for m in re.findall(r"query\[\w+\] (\S+) from", log)})
    machines = slaves + 1
    total = {k: sum(c[k] for c in counts.values()) for k in ("queries", "forwarded", "local")}
    result = {"slaves": slaves, "job_minutes": round(minutes, 2), "job": run.name,
              "names_asked": asked,
              "by_asker": counts, "total": total,
              "per_machine_minute": {k: round(v / (machines * minutes), 2)
                                     for k, v in total.items()}}
    per = result["per_machine_minute"]
    print(f"dns: a {minutes * 60:.0f}s Disco job on {slaves} slaves ({workers} tasks): "
          f"{total['queries']} queries reached the master's dnsmasq, {total['local']} answered "
          f"locally, {total['forwarded']} forwarded upstream")
    print(f"dns: per machine-minute ({machines} machines): {per['queries']} queries, "
          f"{per['local']} local, {per['forwarded']} forwarded")
    print(f"dns: names asked: {', '.join(asked) or 'none'}")
    for who in sorted(counts):
        c = counts[who]
        print(f"  {who:<8} {c['queries']:>6} queries  {c['local']:>6} local  "
              f"{c['forwarded']:>4} forwarded")
    return result


# ---------------------------------------------------------------- job
def write_big_sample(folder: Path, megabytes: int, files: int = 8) -> list[Path]:
    """FILES 2-gram files of MEGABYTES in all, generated (smoke.ngram_lines' format)."""
    import random

    rng = random.Random(2009)
    per_file = megabytes * MB // files
    block = "".join(smoke.ngram_lines(rng, 20000))
    paths = []
    for n in range(files):
        path = Path(folder) / f"googlebooks-eng-bench-2gram-{n:02d}.tsv"
        with open(path, "w") as fh:
            written = 0
            while written < per_file:
                fh.write(block)
                written += len(block)
        paths.append(path)
    return paths


def streamed_answer(paths: list[Path], k: int) -> str:
    """The 2-gram top-K of PATHS in plain Python, one line at a time (the job's own map)."""
    job = smoke.load_job_module()
    totals: dict[str, int] = {}
    for path in paths:
        with open(path) as fh:
            for line in fh:
                for gram, count in job.map_ngram(line, None):
                    totals[gram] = totals.get(gram, 0) + count
    return job.to_csv(job.top_k(totals.items(), k))


def _size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def _docker_cp_rate(record: dict, paths: list[Path]) -> float:
    """MB/s of `docker cp` of PATHS into the master (one folder copy when they share one)."""
    master = container_name(record["name"], "master")
    subprocess.run(["docker", "exec", master, "mkdir", "-p", "/tmp/bench-cp"], check=True)
    folders = {p.parent for p in paths}
    began = time.monotonic()
    if len(paths) > 1 and len(folders) == 1 and sorted(folders.pop().iterdir()) == sorted(paths):
        subprocess.run(["docker", "cp", str(paths[0].parent), f"{master}:/tmp/bench-cp/"],
                       check=True, capture_output=True)
    else:
        for path in paths:
            subprocess.run(["docker", "cp", str(path), f"{master}:/tmp/bench-cp/"],
                           check=True, capture_output=True)
    took = time.monotonic() - began
    subprocess.run(["docker", "exec", master, "rm", "-rf", "/tmp/bench-cp"], check=True)
    return _size(paths) / MB / took


def _first_job_accepted(n: int) -> dict:
    """Containers running -> a 1-task job accepted and done (retried every 0.5 s)."""
    with cluster(f"benchfirst{n}", n, wait=False) as (docker, record):
        started = record["started_at"]
        attempts = 0
        while True:
            attempts += 1
            run = jobs.run_script(docker, record, PROBE, ["hosts", "1", "0"], timeout=20)
            if run.ok:
                return {"seconds": round(time.time() - started, 2), "attempts": attempts,
                        "start_s": record["start_seconds"]}
            if time.time() - started > 300:
                raise ImagebakeError(f"N={n}: no job accepted within 300 s: {run.reason}")
            time.sleep(0.5)


def _post(record: dict, op: str, value) -> None:
    """POST /disco/ctrl/OP on the master (from inside it: the API is on its loopback)."""
    import json
    import shlex

    body = shlex.quote(json.dumps(value))
    rc, out = targets.get("docker").exec(
        record, f"python3 -c \"import sys, urllib.request; urllib.request.urlopen("
                f"urllib.request.Request('http://127.0.0.1:8989/disco/ctrl/{op}', "
                f"data=sys.argv[1].encode(), method='POST'), timeout=10).read()\" {body}")
    if rc != 0:
        raise ImagebakeError(f"POST {op} {value}: {out.strip()[-200:]}")


def use_slaves(record: dict, n: int) -> list[str]:
    """Let Disco schedule tasks on the first N slaves only (the others blacklisted: they
    keep serving their DDFS data, they run no task)."""
    names = state.node_names(record)
    keep = names[:n]
    for host in names:
        _post(record, "whitelist" if host in keep else "blacklist", host)
    return keep


def _load(record: dict, sources: list[str], tag: str, **kw) -> dict:
    done = ddfs_load.load(record, sources, tag, **kw)
    seconds = max(done["seconds"], 1e-6)
    return {"mb": round(done["bytes"] / MB, 1), "seconds": round(seconds, 1),
            "mb_s": round(done["bytes"] / MB / seconds, 2),
            "replica_mb_s": round(done["written"] / MB / seconds, 2),
            "replicas": done["replicas"], "blobs": done["new"]}


def _line(what: str, got: dict, cp: float) -> str:
    return (f"job: ddfs-load {what}: {got['mb']} MB in {got['seconds']}s = {got['mb_s']} MB/s, "
            f"x{got['replicas']} replicas = {got['replica_mb_s']} MB/s written vs docker cp "
            f"{cp:.1f} MB/s: ratio {got['replica_mb_s'] / cp:.2f}")


def _paired(record: dict, big: Path, tag: str, replicas: int, rounds: int) -> tuple[dict, float]:
    """ROUNDS of `docker cp` of BIG then ddfs-load of it (a new tag each round: nothing is
    skipped as already there), each load's ratio to the copy just before it; on a shared
    host one pair is noise, the median of several is the figure. The first round's tag is
    TAG (the jobs read it); returns its figures with every round's ratio and the median,
    and the median copy rate."""
    pairs = []
    for n in range(rounds):
        cp = _docker_cp_rate(record, [big])
        got = _load(record, [str(big)], tag if n == 0 else f"{tag}-r{n + 1}", replicas=replicas)
        got["docker_cp_mb_s"] = round(cp, 1)
        got["ratio"] = round(got["replica_mb_s"] / cp, 3)
        print(_line(f"{tag} round {n + 1}", got, cp))
        pairs.append(got)
    first = dict(pairs[0])
    first["rounds"] = [p["ratio"] for p in pairs]
    first["ratio"] = round(statistics.median(first["rounds"]), 3)
    first["load_avg"] = round(os.getloadavg()[0], 1)
    print(f"job: ddfs-load {tag} (replicas {first['replicas']}): ratio per round "
          f"{', '.join(map(str, first['rounds']))}; median {first['ratio']} "
          f"(load average {first['load_avg']})")
    return first, statistics.median(p["docker_cp_mb_s"] for p in pairs)


def _peak_rss_mb(record: dict, path: Path, tag: str) -> float:
    """Peak RSS (MB) of `invoke ddfs-load` of PATH, run as a child (os.wait4's rusage)."""
    import sys

    env = {**os.environ}
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "ddfs-load", "--name",
                             record["name"], "--input", str(path), "--tag", tag,
                             "--replicas", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise ImagebakeError(f"ddfs-load of {path.name} for the RSS figure failed")
    return usage.ru_maxrss / 1024


@contextlib.contextmanager
def web_server(record: dict, folder: Path):
    """A web server in the cluster's network serving FOLDER (a container of the node
    image); yields its base URL (by address: the nodes resolve only cluster names)."""
    from ..targets.docker.cluster import image_refs

    name = f"imagebake-{record['name']}-web"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--init", "--name", name, "--network",
                    record["network"], "--entrypoint", "python3", image_refs()["node"], "-m",
                    "http.server", "8000", "--directory", "/srv"], check=True,
                   capture_output=True)
    try:
        subprocess.run(["docker", "cp", f"{folder}/.", f"{name}:/srv/"], check=True,
                       capture_output=True)
        address = subprocess.run(
            ["docker", "inspect", "--format",
             "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name],
            check=True, capture_output=True, text=True).stdout.strip()
        yield f"http://{address}:8000"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def bench_job(megabytes: int | None = None, sizes=(1, 2, 4)) -> dict:
    """One cluster of max(SIZES) slaves. ddfs-load beside `docker cp` of the same bytes into
    the master (ratio counting every replica written): one large file (DDFS's replicas, and
    1; ROUNDS pairs of copy then load each, IMAGEBAKE_BENCH_ROUNDS, default 3: the median
    ratio), many small files, the same large file from a web server in the cluster's network
    (the slaves download it); the laptop's peak RSS loading 50 MB vs 500 MB; then the 2-gram
    job on that data with Disco allowed N slaves (the rest blacklisted for tasks), over the
    blobs and over the same data in Disco's chunk format. MEGABYTES (default 200, or
    IMAGEBAKE_BENCH_MB) is the large file's size."""
    megabytes = int(megabytes or os.environ.get("IMAGEBAKE_BENCH_MB") or 200)
    rounds = max(1, int(os.environ.get("IMAGEBAKE_BENCH_ROUNDS") or 3))
    result: dict = {"sample_mb": megabytes, "by_n": {}}
    n_max = max(sizes)
    with tempfile.TemporaryDirectory(dir=os.environ.get("IMAGEBAKE_BENCH_TMP")) as tmp:
        began = time.monotonic()
        big_dir, small_dir = Path(tmp) / "big", Path(tmp) / "small"
        big_dir.mkdir()
        small_dir.mkdir()
        [big] = write_big_sample(big_dir, megabytes, files=1)
        small = write_big_sample(small_dir, megabytes // 2, files=200)
        size_mb = _size([big]) / MB
        want = streamed_answer([big], 10)
        print(f"job: generated one {size_mb:.0f} MB 2-gram file, 200 files of "
              f"{_size(small) / MB / 200:.2f} MB and the plain-Python top-10 "
              f"({time.monotonic() - began:.0f}s)")
        with cluster(f"benchjob{n_max}", n_max) as (docker, record):
            _require_disco(docker, record)
            loads = {}
            for what, tag, replicas in (("large", "data:bench", 0),
                                        ("large_replicas1", "data:bench1", 1)):
                loads[what], cp_big = _paired(record, big, tag, replicas, rounds)
            cp_small = _docker_cp_rate(record, small)
            loads["small"] = _load(record, [str(p) for p in small], "data:benchsmall")
            with web_server(record, big_dir) as url:
                loads["http"] = _load(record, [f"{url}/{big.name}"], "data:benchhttp")
            loads["chunks"] = _load(record, [str(big)], "data:benchchunk", chunk=True)
            rates = {"small": cp_small, "http": cp_big, "chunks": cp_big}
            for what, got in loads.items():
                if what in rates:
                    got["docker_cp_mb_s"] = round(rates[what], 1)
                    got["ratio"] = round(got["replica_mb_s"] / rates[what], 3)
                    print(_line(what, got, rates[what]))
            result["loads"] = loads
            rss = {}
            for mb in (50, 500):
                folder = Path(tmp) / f"rss{mb}"
                folder.mkdir()
                [path] = write_big_sample(folder, mb, files=1)
                rss[str(mb)] = round(_peak_rss_mb(record, path, f"data:rss{mb}"), 1)
                path.unlink()
            result["laptop_peak_rss_mb"] = rss
            print(f"job: laptop peak RSS of invoke ddfs-load: {rss['50']} MB loading 50 MB, "
                  f"{rss['500']} MB loading 500 MB")
            for n in sizes:
                allowed = use_slaves(record, n)
                entry = {}
                for form, args in (("blobs", ["tag://data:bench", "10"]),
                                   ("chunks", ["--chunked", "tag://data:benchchunk", "10"])):
                    began = time.monotonic()
                    run = jobs.run_script(docker, record, smoke.NGRAM_JOB, args, timeout=3600)
                    took = time.monotonic() - began
                    if not run.ok:
                        raise ImagebakeError(f"job benchmark N={n} {form}: {run.reason}")
                    hosts = {h: len(t) for h, t in run.hosts().items()}
                    entry[form] = {"job_s": round(took, 1),
                                   "correct": run.stdout.strip() == want.strip(),
                                   "tasks_by_host": hosts,
                                   "only_allowed": set(hosts) <= set(allowed)}
                result["by_n"][str(n)] = entry
                print(f"job N={n}: 2-gram top-10 over {size_mb:.0f} MB: blobs "
                      f"{entry['blobs']['job_s']}s, chunks {entry['chunks']['job_s']}s "
                      f"(correct: {entry['blobs']['correct']}/{entry['chunks']['correct']})")
    if os.environ.get("IMAGEBAKE_BENCH_SKIP_FIRST_JOB") == "1":
        return result
    first = {n: _first_job_accepted(n) for n in (4, 16)}
    result["first_job"] = {str(k): v for k, v in first.items()}
    for n, f in first.items():
        print(f"job: N={n}: containers running -> first job accepted and done in "
              f"{f['seconds']}s ({f['attempts']} attempts)")
    return result


def run(what: str) -> dict:
    return bench_dns() if what == "dns" else bench_job()
