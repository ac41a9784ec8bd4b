"""imagebake.durations: one grammar (s, m, h, d) and one range per setting, whether the
value comes from a flag or from invoke's config."""

from __future__ import annotations

import pytest

from imagebake import durations, settings
from imagebake.errors import ImagebakeError


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("4h", 14400),
                                           ("2d", 172800), (" 10m ", 600)])
def test_one_grammar_for_every_duration(text, seconds):
    assert durations.parse(text, "--x") == seconds


@pytest.mark.parametrize("bad", ["", "4", "4 h", "h", "-1m", "1.5h", "4w", True, None, 5.5])
def test_anything_else_is_one_line_naming_the_flag(bad):
    with pytest.raises(ImagebakeError) as err:
        durations.parse(bad, "--ttl")
    assert str(err.value).startswith("--ttl ") and "\n" not in str(err.value)


def test_each_setting_states_its_range():
    assert durations.ttl_seconds("10m") == 600 and durations.ttl_seconds("30d") == 2592000
    assert durations.idle_stop_seconds("90s") == 90
    for value, check in (("9m", durations.ttl_seconds), ("31d", durations.ttl_seconds),
                         ("59s", durations.idle_stop_seconds)):
        with pytest.raises(ImagebakeError, match="out of range"):
            check(value)
    assert durations.ttl_seconds(None) is None


def test_no_environment_lowers_a_floor(monkeypatch):
    # the ranges are the product's own: the old test-only switch is gone for good
    for var in ("IMAGEBAKE_TEST_IDLE_STOP_MIN_SECONDS", "IMAGEBAKE_IDLE_STOP_MIN_SECONDS"):
        monkeypatch.setenv(var, "1")
    assert durations.idle_stop_seconds("60s") == 60
    for value in ("10s", "59s"):
        with pytest.raises(ImagebakeError, match="out of range: use 1m to 30d"):
            durations.idle_stop_seconds(value)


def test_config_and_flags_accept_and_refuse_the_same_values():
    # `--idle-stop 90s` works as a flag, so it works in invoke.yaml too
    assert settings.check("idle_stop", "90s", "user file x") == "90s"
    assert durations.idle_stop_seconds("90s") == 90
    for key, bad in (("idle_stop", "30s"), ("ttl", "5m"), ("ttl", "4 hours")):
        with pytest.raises(ImagebakeError, match=f"imagebake.{key} in user file x"):
            settings.check(key, bad, "user file x")
        with pytest.raises(ImagebakeError):
            durations.seconds(bad, durations.LIMITS[key])


def test_span_is_the_shortest_exact_spelling():
    assert [durations.span(s) for s in (59, 60, 600, 3600, 5400, 86400)] == [
        "59s", "1m", "10m", "1h", "90m", "1d"]
