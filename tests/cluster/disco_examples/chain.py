"""A chained job (doc/faq.rst "How do I pass the output of one map-reduce phase to
another?"): the word count's results are the input of a second job, read with
chain_reader, which counts how many words occur how often."""
import sys

from disco.core import Job, result_iterator
from disco.worker.task_io import chain_reader


def count_map(line, params):
    for word in line.split():
        yield word, 1


def count_reduce(iter, params):
    from disco.util import kvgroup
    for word, counts in kvgroup(sorted(iter)):
        yield word, sum(counts)


def histogram_map(word_count, params):
    word, count = word_count
    yield count, 1


def histogram_reduce(iter, params):
    from disco.util import kvgroup
    for count, ones in kvgroup(sorted(iter)):
        yield count, sum(ones)


if __name__ == '__main__':
    words = Job().run(input=sys.argv[1:], map=count_map, reduce=count_reduce)
    histogram = Job().run(input=words.wait(), map_reader=chain_reader,
                          map=histogram_map, reduce=histogram_reduce)
    for count, words_with_it in result_iterator(histogram.wait()):
        print(count, words_with_it)
