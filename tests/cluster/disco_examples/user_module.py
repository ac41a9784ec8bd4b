"""A job whose map calls a module of the user's (wordtools.py beside this script):
Disco finds it with its module scanner (disco.worker.modutil) and ships it."""
import sys

import wordtools
from disco.core import Job, result_iterator


def map(line, params):
    for word in line.split():
        yield wordtools.normalize(word), 1


def reduce(iter, params):
    from disco.util import kvgroup
    for word, counts in kvgroup(sorted(iter)):
        yield word, sum(counts)


if __name__ == '__main__':
    job = Job().run(input=sys.argv[1:], map=map, reduce=reduce)
    for word, count in result_iterator(job.wait()):
        print(word, count)
