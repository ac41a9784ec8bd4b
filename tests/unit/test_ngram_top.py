"""The n-gram job's pure functions, without Disco."""

from __future__ import annotations

import importlib.util
import random
from collections import Counter
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "ngram_top", Path(__file__).parents[2] / "examples" / "ngram_top.py")
ngram_top = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ngram_top)


def test_map_parses_five_column_line():
    assert list(ngram_top.map_ngram("of the\t1999\t120\t80\t30\n", None)) == [("of the", 120)]


def test_map_parses_four_column_2012_line():
    assert list(ngram_top.map_ngram("in the\t2001\t7\t3", None)) == [("in the", 7)]


@pytest.mark.parametrize("line", [
    "", "\n", "only-one-field", "a b\tyear\t12\t1\t1", "a b\t1999\tmany\t1\t1",
    "a b\t1999\t-3\t1\t1", "\t1999\t3\t1\t1", "a\t1\t2\t3\t4\t5\t6",
])
def test_map_skips_malformed_lines(line):
    assert list(ngram_top.map_ngram(line, None)) == []


def test_reduce_sums_unsorted_input():
    pairs = [("b", 2), ("a", 1), ("b", 3), ("a", 4)]
    assert list(ngram_top.reduce_counts(pairs, None)) == [("a", 5), ("b", 5)]


def test_top_k_ties_broken_by_ngram():
    assert ngram_top.top_k([("b", 5), ("a", 5), ("c", 9), ("d", 1)], 3) == [
        ("c", 9), ("a", 5), ("b", 5)]


def test_csv_output():
    assert ngram_top.to_csv([("of the", 10), ('say "hi"', 2)]) == (
        'ngram,count\nof the,10\n"say ""hi""",2\n')


def test_pipeline_matches_a_direct_count_on_generated_sample():
    rng = random.Random(7)
    words = ["of the", "in the", "to be", "it is", "on a", "at the"]
    lines, want = [], Counter()
    for _ in range(2000):
        gram, year, count = rng.choice(words), rng.randint(1800, 2008), rng.randint(1, 500)
        lines.append(f"{gram}\t{year}\t{count}\t{count}\t1\n")
        want[gram] += count
    lines += ["garbage\n", "x\ty\tz\n"]
    assert ngram_top.run_local(lines, 3) == sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))[:3]


def test_arguments_choose_the_reader_of_the_stored_format():
    assert ngram_top.parse_args(["x", "tag://a", "5"]) == (["tag://a"], 5, False)
    assert ngram_top.parse_args(["x", "--chunked", "tag://a", "tag://b", "3"]) == (
        ["tag://a", "tag://b"], 3, True)
    assert ngram_top.parse_args(["x"]) == (["tag://data:2grams"], 20, False)
