"""The 2-gram count of examples/ngram_top.py, slowed down: each map task first sleeps
TASK_SECONDS (map_init), so that a job over a few blobs is still running when the VM test
serves a spot notice or powers a slave off. Uploaded alone to the master and run there
as disco by imagebake.disco.jobs.run_script (Disco ships the functions' code: each is
self-contained). Prints the full count as CSV (ngram,count, sorted by n-gram); the
test compares it with examples/ngram_top.py's plain-Python pipeline.

    python3 slow_ngram_job.py TASK_SECONDS INPUT ...
"""

import sys


def sleep_first(input_iter, params):
    import time

    time.sleep(float(params))


def map_ngram(line, params):
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) not in (4, 5) or not fields[0].strip():
        return
    year, count = fields[1], fields[2]
    if not (year.isdigit() and count.isdigit()):
        return
    yield fields[0], int(count)


def reduce_counts(iter, params):  # noqa: A002 - Disco's reduce signature
    import itertools

    pairs = sorted(iter, key=lambda kv: kv[0])
    for ngram, group in itertools.groupby(pairs, key=lambda kv: kv[0]):
        yield ngram, sum(int(count) for _, count in group)


def main(argv):
    import os

    from disco.core import Job, result_iterator

    seconds, inputs = argv[1], argv[2:]
    job = Job().run(input=inputs, map=map_ngram, map_init=sleep_first,
                    reduce=reduce_counts, params=seconds)
    sys.stderr.write("job " + job.name + "\n")
    sys.stderr.flush()
    results = job.wait(show=False, timeout=float(os.environ.get("JOB_TIMEOUT", "600")))
    for ngram, count in sorted(result_iterator(results)):
        sys.stdout.write(f"{ngram},{count}\n")


if __name__ == "__main__":
    main(sys.argv)
