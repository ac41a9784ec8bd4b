"""imagebake/validate.py: a count flag outside its range, or not a whole number, is one
line naming the flag and the range."""

from __future__ import annotations

import pytest

from imagebake.errors import ImagebakeError
from imagebake.validate import parse_count


@pytest.mark.parametrize("value, number", [(4, 4), ("4", 4), (" 16 ", 16), ("1", 1), (64, 64)])
def test_a_count_in_range_is_its_number(value, number):
    assert parse_count(value, "--slaves", 1, 64) == number


@pytest.mark.parametrize("value, says", [
    ("four", "--slaves must be a whole number, not 'four'"),
    ("2.5", "--slaves must be a whole number"),
    ("", "--slaves must be a whole number"),
    (None, "--slaves must be a whole number"),
    (0, "--slaves must be between 1 and 64, not 0"),
    ("65", "--slaves must be between 1 and 64, not 65"),
    (-3, "--slaves must be between 1 and 64, not -3"),
])
def test_anything_else_is_one_line_naming_flag_and_range(value, says):
    with pytest.raises(ImagebakeError) as err:
        parse_count(value, "--slaves", 1, 64)
    assert str(err.value).startswith(says) and "\n" not in str(err.value)
