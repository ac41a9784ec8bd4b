"""Disco's documented job shapes, run as users write them, on the local 2-slave cluster
with the exact answer: the tutorial word count (`Job().run(input=…, map=…, reduce=…)`,
`result_iterator`), a job with `partitions` (an int key through the default partition
function), a job with `params`, a job importing a module of the user's (shipped by Disco's
module scanner; the slaves do not have it) and a chained job reading another's results.
Each job's stderr must be empty: no warning from the job pack or from Disco's code reaches
a user's output. Disco 0.5.4 on Python 3 hands a map function each input line as bytes (its
own tests call bytes_to_str in their maps), so the tutorial's words are bytes keys and print
as b'word': the counts are exact, the keys are compared decoded. The scripts are in
tests/cluster/disco_examples/. Skipped when the baked images carry no Disco."""

from __future__ import annotations

import random
import shlex
from collections import Counter
from pathlib import Path

import pytest

from imagebake.disco import selftest
from imagebake.targets.docker import cluster as docker_cluster

from .helpers import sh

EXAMPLES = Path(__file__).with_name("disco_examples")
REMOTE = "/tmp/imagebake-examples"
TAG = "data:imagebake-examples"
TARGET = docker_cluster.DockerTarget()
JOB_TIMEOUT = 600  # seconds; the host is shared, a job here takes ~10-60 s
VOCABULARY = ("the of and to a in Disco map reduce word count job node slave master "
              "data Erlang Python key value Chekhov tutorial").split()


def sample_text(lines: int = 400, seed: int = 7) -> str:
    """Words with capitals and punctuation (the user module normalizes them)."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(VOCABULARY) for _ in range(rng.randint(3, 12))]
        words = [w.capitalize() if rng.random() < 0.2 else w for w in words]
        out.append(" ".join(words) + rng.choice(["", ".", ",", "!", ";"]))
    return "\n".join(out) + "\n"


TEXT = sample_text()
WORDS = TEXT.split()


@pytest.fixture(scope="module")
def ex(with_disco, launcher):
    """A 2-slave cluster (the default docker bake's shape) with the sample in DDFS and the
    example scripts on the master."""
    record = launcher("examples", 2)
    sh(record, "master", f"rm -rf {REMOTE} && mkdir -p {REMOTE}", user="disco")
    for path in [*sorted(EXAMPLES.glob("*.py"))]:
        with open(path, "rb") as code:
            TARGET.exec(record, f"cat > {REMOTE}/{path.name}", user="disco", stdin=code)
    TARGET.exec(record, f"cat > {REMOTE}/sample", user="disco",
                stdin=_bytes_file(TEXT.encode()))
    sh(record, "master", f"ddfs rm {TAG} >/dev/null 2>&1; ddfs push {TAG} {REMOTE}/sample",
       user="disco")
    return record


def _bytes_file(data: bytes):
    import tempfile

    handle = tempfile.TemporaryFile()
    handle.write(data)
    handle.seek(0)
    return handle


def run_example(record: dict, script: str) -> tuple[list[tuple[str, str]], str, str]:
    """Run SCRIPT in its folder as disco (python3, warnings as Python shows them by
    default); returns (result pairs, stdout, stderr). A job that does not end in
    JOB_TIMEOUT is killed."""
    mark = "=== stderr ==="
    rc, out = TARGET.exec(
        record, f"cd {REMOTE} && err=$(mktemp) && timeout -s KILL {JOB_TIMEOUT} python3 "
                f"{shlex.quote(script)} tag://{TAG} 2>$err; rc=$?; echo '{mark}'; cat $err; "
                "rm -f $err; exit $rc", user="disco")
    stdout, _, stderr = out.partition(mark)
    if rc != 0:
        selftest.kill_jobs(TARGET, record)
    assert rc == 0, f"{script} exited {rc}: {stderr.strip()[-2000:]}"
    pairs = [tuple(line.split(" ", 1)) for line in stdout.strip().splitlines()]
    return pairs, stdout, stderr.strip()


def as_counts(pairs) -> dict[str, int]:
    """Printed (key, count) pairs as a dict; a bytes key (b'word') decoded."""
    import ast

    def key(text: str) -> str:
        return ast.literal_eval(text).decode() if text.startswith(("b'", 'b"')) else text

    return {key(k): int(value) for k, value in pairs}


def test_tutorial_word_count_is_exact_and_its_output_clean(ex):
    pairs, _, stderr = run_example(ex, "count_words.py")
    assert as_counts(pairs) == dict(Counter(WORDS))
    keys = list(as_counts(pairs))
    assert keys == sorted(keys, key=str.encode)  # one reduce, sorted (as bytes)
    assert stderr == "", f"the job printed warnings: {stderr[:500]}"


def test_partitions_with_an_int_key_are_exact(ex):
    pairs, _, stderr = run_example(ex, "partitions.py")
    assert pairs[0] == ("results", "3")  # one result per partition
    assert as_counts(pairs[1:]) == {str(k): v for k, v in Counter(map(len, WORDS)).items()}
    assert stderr == ""


def test_params_reach_the_map_function(ex):
    pairs, _, stderr = run_example(ex, "params.py")
    want = Counter(w for w in WORDS if w not in {"the", "of", "and"})
    assert as_counts(pairs) == dict(want) and "the" not in as_counts(pairs)
    assert stderr == ""


def test_a_module_of_the_user_is_found_and_shipped(ex):
    assert sh(ex, "node01", "python3 -c 'import wordtools'", user="disco",
              check=False).returncode != 0  # not on the slaves: Disco must ship it
    pairs, _, stderr = run_example(ex, "user_module.py")
    want = Counter(w.strip(".,;:!?").lower() for w in WORDS)
    assert as_counts(pairs) == dict(want)
    assert stderr == ""


def test_a_chained_job_reads_the_first_jobs_results(ex):
    pairs, _, stderr = run_example(ex, "chain.py")
    histogram = Counter(Counter(WORDS).values())
    assert as_counts(pairs) == {str(k): v for k, v in histogram.items()}
    assert stderr == ""


def test_workers_keep_disco_compiled_in_the_job_home(ex):
    """A job's tasks on a slave compile Disco's library in the job home once and reuse it
    (py3 patch 0013): Disco 0.5.4's worker turned .pyc writing off on every Python 3, so
    each task (one Python process) recompiled it."""
    run_example(ex, "count_words.py")
    found = [sh(ex, node, "find /usr/var/disco/data -path '*/dist-packages/disco/__pycache__/"
                          "util.cpython-*.pyc' | head -1").stdout.strip()
             for node in ("node01", "node02")]
    assert any(found), "no compiled Disco library in any job home on the slaves"
