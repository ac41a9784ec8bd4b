"""`invoke smoke`: prove a running cluster works.

With Disco in the images: the 2-gram job (examples/ngram_top.py) on a
generated sample whose answer is computed locally. Without
(offline bakes): the check Disco itself relies on — an Erlang node on the
master, as the `disco` user, starts a remote node on every slave with
`slave:start` over ssh (pinned host keys, shared cookie).
"""

from __future__ import annotations

import importlib.util
import io
import random
import shlex
from pathlib import Path

from .. import targets
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
TOP_K = 3


def ngram_sample(seed: int = 11, lines: int = 3000) -> str:
    """A small n-gram file (2009 format) with a few malformed lines."""
    rng = random.Random(seed)
    grams = ["of the", "in the", "to be", "it is", "on a", "at the", "from the"]
    rows = [f"{rng.choice(grams)}\t{rng.randint(1800, 2008)}\t{rng.randint(1, 900)}\t1\t1"
            for _ in range(lines)]
    rows[::500] = ["malformed line"] * len(rows[::500])
    return "\n".join(rows) + "\n"


def ngram_smoke(target: Target, record: dict) -> tuple[bool, str]:
    """The 2-gram job on a generated sample; its answer is computed here without Disco."""
    from . import ddfs_load

    spec = importlib.util.spec_from_file_location("ngram_top", NGRAM_JOB)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    sample = ngram_sample()
    want = job.to_csv(job.run_local(sample.splitlines(keepends=True), TOP_K))
    ddfs_load.push(record, "data:imagebake-smoke", "ngrams.tsv", io.BytesIO(sample.encode()))
    with open(NGRAM_JOB, "rb") as code:
        rc, _ = target.exec(record, "cat > /tmp/ngram_top.py", user="disco", stdin=code)
    rc, out = target.exec(
        record, f"python /tmp/ngram_top.py tag://data:imagebake-smoke {TOP_K}", user="disco")
    got = out[out.find("ngram,count"):] if "ngram,count" in out else out
    ok = rc == 0 and got.strip() == want.strip()
    verdict = "top-K matches the local answer" if ok else f"WRONG (want {want!r})"
    return ok, f"{got.strip()}\nsmoke: Disco 2-gram job ran: {verdict}"


def smoke(record: dict) -> tuple[bool, str]:
    target = targets.get(record["target"])
    rc, _ = target.exec(record, "command -v disco")
    if rc == 0:
        return ngram_smoke(target, record)
    rc, out = target.exec(record, erlang_check_command(record["nodes"]), user="disco")
    return rc == 0, (
        f"{out.strip()}\nsmoke: Disco is not in the images (offline bake), so Disco itself was "
        f"not exercised; the Erlang check {'passed' if rc == 0 else 'FAILED'}: the master "
        f"started a remote node on {len(record['nodes']) - rc}/{len(record['nodes'])} slaves "
        "with slave:start over ssh"
    )
