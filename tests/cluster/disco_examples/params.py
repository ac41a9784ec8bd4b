"""A job with params: the tutorial's word count without the stop words given as params
(the tutorial's own "What next?" suggestion). On Python 3 a map gets bytes lines, so the
stop words are bytes."""
import sys

from disco.core import Job, result_iterator


def map(line, params):
    for word in line.split():
        if word not in params:
            yield word, 1


def reduce(iter, params):
    from disco.util import kvgroup
    for word, counts in kvgroup(sorted(iter)):
        yield word, sum(counts)


if __name__ == '__main__':
    job = Job().run(input=sys.argv[1:], map=map, reduce=reduce,
                    params=set([b"the", b"of", b"and"]))
    for word, count in result_iterator(job.wait()):
        print(word, count)
