"""Durations, launcher side: one grammar for flags and invoke config alike.

A whole number and one unit: s, m, h or d (`90s`, `30m`, `4h`, `2d`). Each limit that
takes a duration states its range here, so `--idle-stop 90s` on the command line and
`idle_stop: 90s` in invoke.yaml are the same value, accepted or refused the same way.
(The agent, stdlib only and importing nothing of the package, receives seconds.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ImagebakeError

GRAMMAR = re.compile(r"(\d{1,7})([smhd])")  # matched whole (fullmatch)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EXAMPLES = "e.g. 90m, 4h or 2d"


@dataclass(frozen=True)
class Limit:
    """A setting that takes a duration: its flag and its range in seconds."""

    flag: str
    low: int
    high: int

    def range_text(self) -> str:
        return f"{span(self.low)} to {span(self.high)}"


TTL = Limit("--ttl", 10 * 60, 30 * 86400)
IDLE_STOP = Limit("--idle-stop", 60, 30 * 86400)
LIMITS = {"ttl": TTL, "idle_stop": IDLE_STOP}


def span(seconds: int) -> str:
    """The shortest exact spelling in the grammar: 600 -> '10m', 86400 -> '1d'."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"


def parse(value: Any, flag: str) -> int:
    """'90s', '30m', '4h', '2d' -> seconds; anything else is one line naming FLAG."""
    text = str(value).strip() if isinstance(value, (str, int)) and \
        not isinstance(value, bool) else ""
    match = GRAMMAR.fullmatch(text)
    if not match:
        raise ImagebakeError(f"{flag} {value!r} is not a duration: write a whole number and "
                             f"s, m, h or d, {EXAMPLES}")
    return int(match.group(1)) * UNITS[match.group(2)]


def seconds(value: Any, limit: Limit) -> int | None:
    """VALUE in seconds within LIMIT's range; None -> None."""
    if value is None:
        return None
    got = parse(value, limit.flag)
    if not limit.low <= got <= limit.high:
        raise ImagebakeError(f"{limit.flag} {value!r} is out of range: use "
                             f"{limit.range_text()}")
    return got


def ttl_seconds(value: Any) -> int | None:
    """--ttl: 10m to 30d."""
    return seconds(value, TTL)


def idle_stop_seconds(value: Any) -> int | None:
    """--idle-stop: 1m to 30d."""
    return seconds(value, IDLE_STOP)
