"""A job with partitions: words counted by length, an int key, over 3 reduce partitions
(the default partition function hashes the key)."""
import sys

from disco.core import Job, result_iterator


def map(line, params):
    for word in line.split():
        yield len(word), 1


def reduce(iter, params):
    from disco.util import kvgroup
    for length, counts in kvgroup(sorted(iter)):
        yield length, sum(counts)


if __name__ == '__main__':
    job = Job().run(input=sys.argv[1:], map=map, reduce=reduce, partitions=3)
    results = job.wait()
    print("results", len(results))
    for length, count in result_iterator(results):
        print(length, count)
