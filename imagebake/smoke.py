"""`invoke smoke`: prove a running cluster works.

With Disco in the images: a word-count job whose answer is known. Without
(offline bakes): the check Disco itself relies on — an Erlang node on the
master, as the `disco` user, starts a remote node on every slave with
`slave:start` over ssh (pinned host keys, shared cookie).
"""

from __future__ import annotations

import importlib
import shlex

from .errors import ImagebakeError

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

WORDS = "the quick brown fox jumps over the lazy dog the end"


def erlang_check_command(hosts: list[str]) -> str:
    script = ERLANG_CHECK % {"hosts": ", ".join(f"'{h}'" for h in hosts)}
    script = " ".join(line.strip() for line in script.strip().splitlines())
    return f"erl -sname imagebake_smoke_master -noshell -rsh ssh -eval {shlex.quote(script)}"


WORDCOUNT_JOB = r"""
import collections, sys
from disco.core import Job, result_iterator

def fun_map(line, params):
    for word in line.split():
        yield word, 1

def fun_reduce(iter, params):
    from disco.util import kvgroup
    for word, counts in kvgroup(sorted(iter)):
        yield word, sum(counts)

if __name__ == "__main__":
    job = Job().run(input=["tag://data:imagebake-smoke"], map=fun_map, reduce=fun_reduce)
    got = dict(result_iterator(job.wait(show=False)))
    want = collections.Counter(sys.argv[1].split())
    print("counts", sorted(got.items()))
    sys.exit(0 if got == dict(want) else 1)
"""


def wordcount_command() -> str:
    return " && ".join([
        f"printf '%s\\n' {shlex.quote(WORDS)} > /tmp/imagebake-smoke.txt",
        "ddfs chunk data:imagebake-smoke /tmp/imagebake-smoke.txt",
        f"printf '%s' {shlex.quote(WORDCOUNT_JOB)} > /tmp/imagebake_smoke_job.py",
        f"python /tmp/imagebake_smoke_job.py {shlex.quote(WORDS)}",
    ])


def smoke(record: dict) -> tuple[bool, str]:
    driver = importlib.import_module(f"imagebake.{record['target']}_cluster")
    if not hasattr(driver, "master_exec"):
        raise ImagebakeError(f"smoke is not available for the {record['target']} target yet")
    rc, _ = driver.master_exec(record, "command -v disco")
    if rc == 0:
        rc, out = driver.master_exec(record, wordcount_command(), user="disco")
        verdict = "word count correct" if rc == 0 else "word count WRONG or job failed"
        return rc == 0, f"{out.strip()}\nsmoke: Disco job ran: {verdict}"
    rc, out = driver.master_exec(record, erlang_check_command(record["nodes"]), user="disco")
    return rc == 0, (
        f"{out.strip()}\nsmoke: Disco is not in the images (offline bake), so Disco itself was "
        f"not exercised; the Erlang check {'passed' if rc == 0 else 'FAILED'}: the master "
        f"started a remote node on {len(record['nodes']) - rc}/{len(record['nodes'])} slaves "
        "with slave:start over ssh"
    )
