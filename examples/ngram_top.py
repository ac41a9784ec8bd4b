"""Most frequent n-grams over all years, from the Google Books n-gram files.

Input lines: ``ngram TAB year TAB match_count TAB page_count TAB volume_count``
(the 2009 files; the 2012 files drop page_count: both are accepted). Lines that
do not parse are skipped and counted. Output: the top K as CSV ``ngram,count``.

Run on a cluster (after ``invoke ddfs-load ... --tag data:2grams``)::

    invoke job --name demo examples/ngram_top.py -- tag://data:2grams 20

map_ngram and reduce_counts are self-contained (Disco ships the function code
to the workers), so they are unit-tested here without Disco.
"""

import csv
import io
import sys


def map_ngram(line, params):
    """Yield (ngram, match_count) for one well-formed line; nothing for a malformed one.

    Lines arrive as bytes on Python 3 (Disco's default reader and chain_reader alike)."""
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
    """Sum the counts of each n-gram (input need not be sorted)."""
    import itertools

    pairs = sorted(iter, key=lambda kv: kv[0])
    for ngram, group in itertools.groupby(pairs, key=lambda kv: kv[0]):
        yield ngram, sum(int(count) for _, count in group)


def top_k(counts, k):
    """The K largest (ngram, count) pairs, ties broken by n-gram for a stable answer."""
    return sorted(counts, key=lambda kv: (-kv[1], kv[0]))[:k]


def to_csv(rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ngram", "count"])
    writer.writerows(rows)
    return out.getvalue()


def run_local(lines, k):
    """The same pipeline without Disco: map every line, reduce, take the top K."""
    mapped = [kv for line in lines for kv in map_ngram(line, None)]
    return top_k(reduce_counts(mapped, None), k)


def parse_args(argv):
    """([--chunked] INPUT ... K) -> (inputs, k, chunked); INPUTs default to
    tag://data:2grams, K to 20."""
    args = list(argv[1:])
    chunked = "--chunked" in args
    args = [a for a in args if a != "--chunked"]
    inputs, k = args[:-1] or ["tag://data:2grams"], int(args[-1]) if args else 20
    return inputs, k, chunked


def main(argv):
    """python ngram_top.py [--chunked] [INPUT ...] K: INPUTs default to tag://data:2grams.
    `invoke ddfs-load` stores plain line-aligned blobs, read with Disco's default reader;
    data stored with `ddfs-load --chunk` (Disco's chunk format, as `ddfs chunk`) needs
    --chunked (map_reader=chain_reader). The job's name goes to stderr as `job NAME` (for
    `disco events NAME`); JOB_TIMEOUT (seconds, default 600) bounds the wait: a job that
    never ends is a failure, not a hang."""
    import os

    from disco.core import Job, result_iterator
    from disco.worker.task_io import chain_reader

    inputs, k, chunked = parse_args(argv)
    job = Job().run(input=inputs, map=map_ngram, reduce=reduce_counts,
                    map_reader=chain_reader if chunked else None)
    sys.stderr.write("job " + job.name + "\n")
    sys.stderr.flush()
    timeout = float(os.environ.get("JOB_TIMEOUT", "600"))
    results = job.wait(show=False, timeout=timeout)
    sys.stdout.write(to_csv(top_k(result_iterator(results), k)))


if __name__ == "__main__":
    main(sys.argv)
