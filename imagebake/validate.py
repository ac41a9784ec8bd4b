"""Parsing of user input shared by the targets: one-line errors, nothing else."""

from __future__ import annotations

from .errors import ImagebakeError


def parse_count(value, flag: str, low: int, high: int) -> int:
    """An integer flag within [low, high], e.g. --slaves."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ImagebakeError(f"{flag} must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise ImagebakeError(f"{flag} must be between {low} and {high}, not {number}")
    return number
