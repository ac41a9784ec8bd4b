"""Disco's tutorial word count (doc/start/tutorial.rst, examples/util/count_words.py), as
the tutorial writes it; only the input comes from the command line (a DDFS tag here,
the tutorial's file is on a web site the cluster cannot reach)."""
import sys

from disco.core import Job, result_iterator


def map(line, params):
    for word in line.split():
        yield word, 1


def reduce(iter, params):
    from disco.util import kvgroup
    for word, counts in kvgroup(sorted(iter)):
        yield word, sum(counts)


if __name__ == '__main__':
    job = Job().run(input=sys.argv[1:],
                    map=map,
                    reduce=reduce)
    for word, count in result_iterator(job.wait()):
        print(word, count)
