"""`invoke smoke`: prove a running cluster works.

With Disco in the images: a generated 2-gram sample pushed by ddfs-load, the
2-gram top-K job (examples/ngram_top.py) over it, its answer compared with the
same computation in plain Python, and Disco's job events showing where the tasks
ran (slaves only). Without
(offline bakes): the check Disco itself relies on — an Erlang node on the
master, as the `disco` user, starts a remote node on every slave with
`slave:start` over ssh (pinned host keys, shared cookie).
"""

from __future__ import annotations

import importlib.util
import random
import shlex
from pathlib import Path

from .. import state, targets
from ..targets.base import Target

ERLANG_CHECK = r"""
Hosts = [%(hosts)s],
Results = [begin
    R = slave:start(H, imagebake_smoke),
    case R of
        {ok, N} ->
            Peer = rpc:call(N, erlang, node, []),
            slave:stop(N),
            io:format("~s ok ~s~n", [H, Peer]);
        {error, Why} ->
            io:format("~s failed ~p~n", [H, Why])
    end,
    R
end || H <- Hosts],
Failed = [R || R <- Results, element(1, R) =/= ok],
halt(length(Failed)).
"""

def erlang_check_command(hosts: list[str]) -> str:
    script = ERLANG_CHECK % {"hosts": ", ".join(f"'{h}'" for h in hosts)}
    script = " ".join(line.strip() for line in script.strip().splitlines())
    return f"erl -sname imagebake_smoke_master -noshell -rsh ssh -eval {shlex.quote(script)}"


NGRAM_JOB = Path(__file__).resolve().parents[2] / "examples" / "ngram_top.py"
SMOKE_TAG = "data:imagebake-smoke"
TOP_K = 5
JOB_TIMEOUT = 300  # seconds: a job that does not end by then is a failure, never a hang
GRAMS = [f"{a} {b}" for a in ("of", "in", "to", "it", "on", "at", "from", "by")
         for b in ("the", "a", "be", "is", "this")]


def ngram_lines(rng: random.Random, count: int) -> list[str]:
    """COUNT lines in the Google Books 2-gram format of 2009 (ngram TAB year TAB
    match_count TAB page_count TAB volume_count), every 500th one malformed."""
    rows = []
    for i in range(count):
        if i % 500 == 499:
            rows.append("malformed line\n")
            continue
        match = rng.randint(1, 900)
        rows.append(f"{rng.choice(GRAMS)}\t{rng.randint(1800, 2008)}\t{match}\t"
                    f"{rng.randint(1, match)}\t{rng.randint(1, 40)}\n")
    return rows


def write_sample(folder: Path, files: int, lines: int, seed: int = 11) -> list[Path]:
    """FILES generated 2-gram files of LINES lines each in FOLDER (one DDFS blob and so
    one map task each)."""
    rng = random.Random(seed)
    paths = []
    for n in range(files):
        path = Path(folder) / f"googlebooks-eng-sample-2gram-{n:02d}.tsv"
        path.write_text("".join(ngram_lines(rng, lines)))
        paths.append(path)
    return paths


def load_job_module():
    spec = importlib.util.spec_from_file_location("ngram_top", NGRAM_JOB)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job


def local_answer(paths: list[Path], k: int) -> str:
    """The same computation in plain Python (examples/ngram_top.py's functions)."""
    job = load_job_module()
    lines = [line for p in paths for line in p.read_text().splitlines(keepends=True)]
    return job.to_csv(job.run_local(lines, k))


def ngram_smoke(target: Target, record: dict) -> tuple[bool, str]:
    """ddfs-load a generated 2-gram sample, run the 2-gram top-K job on it, compare with
    plain Python, and read Disco's events: every task on a slave, none on the master."""
    import tempfile

    from . import ddfs_load, jobs

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_sample(Path(tmp), files=2 * len(record["nodes"]), lines=4000)
        want = local_answer(paths, TOP_K)
        target.exec(record, f"ddfs rm {SMOKE_TAG} >/dev/null 2>&1", user="disco")
        stored = ddfs_load.load(record, [str(p) for p in paths], SMOKE_TAG)
    lines.append(f"ddfs-load: {stored['inputs']} generated 2-gram files under "
                 f"tag://{SMOKE_TAG} ({stored['new']} blobs)")
    run = jobs.run_script(target, record, NGRAM_JOB, [f"tag://{SMOKE_TAG}", str(TOP_K)],
                          timeout=JOB_TIMEOUT)
    if not run.ok:
        return False, "\n".join(lines + [f"smoke: FAILED: {run.reason}"])
    got, job = run.stdout, run.name
    lines.append(got.strip())
    same = got.strip() == want.strip()
    lines.append(f"job {job}: top-{TOP_K} " + ("matches the plain-Python answer" if same
                                                else f"DIFFERS from the plain-Python {want!r}"))
    hosts = run.hosts()
    on_master = hosts.get("master", [])
    for host in sorted(hosts):
        lines.append(f"  {host}: {len(hosts[host])} tasks ({', '.join(hosts[host][:6])}"
                     f"{' ...' if len(hosts[host]) > 6 else ''})")
    where_ok = bool(hosts) and not on_master and set(hosts) <= set(state.node_names(record))
    lines.append("tasks ran on the slaves only, none on the master" if where_ok else
                 f"tasks NOT only on the slaves (events: {hosts or 'none found'})")
    ok = same and where_ok
    lines.append(f"smoke: Disco 2-gram job {'passed' if ok else 'FAILED'}")
    return ok, "\n".join(lines)


def smoke(record: dict) -> tuple[bool, str]:
    target = targets.get(record["target"])
    rc, _ = target.exec(record, "command -v disco")
    if rc == 0:
        return ngram_smoke(target, record)
    rc, out = target.exec(record, erlang_check_command(state.node_names(record)), user="disco")
    return rc == 0, (
        f"{out.strip()}\nsmoke: Disco is not in the images (offline bake), so Disco itself was "
        f"not exercised; the Erlang check {'passed' if rc == 0 else 'FAILED'}: the master "
        f"started a remote node on {len(record['nodes']) - rc}/{len(record['nodes'])} slaves "
        "with slave:start over ssh"
    )
