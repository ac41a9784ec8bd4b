"""The launcher's own input checks (no cloud, no cluster): each bad value is refused whole."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imagebake import settings, state
from imagebake.errors import ImagebakeError
from imagebake.targets.aws import inputs, network

ROOT = Path(__file__).resolve().parents[2]


def _settings_var(name: str) -> object:
    return settings._check_vars("vars", {name: "x"}, "test", False,
                                lambda: ImagebakeError("wrong"))


# --- N7: a trailing newline is not part of a valid value --------------------------------

VALIDATORS = [
    ("cluster-name", state.check_name, "demo"),
    ("instance-type", lambda v: inputs.instance_type(v, "--instance-type"), "t3.medium"),
    ("resource-id", lambda v: inputs.resource_id(v, "subnet", "--subnet"), "subnet-0123abcd"),
    ("region", lambda v: network.check_region(_NoRegions(), v), "eu-west-1"),
    ("settings-var-name", _settings_var, "disco_source"),
]


class _NoRegions:
    """Stands in for a boto3 session after the format check: knows every well-formed region."""

    def get_available_regions(self, service, partition_name):
        return ["eu-west-1"]


@pytest.mark.parametrize("check, good", [(c, g) for _, c, g in VALIDATORS],
                         ids=[n for n, _, _ in VALIDATORS])
def test_a_trailing_newline_is_refused(check, good):
    check(good)  # the value itself passes ...
    with pytest.raises(ImagebakeError):
        check(good + "\n")  # ... with a newline after it, it does not


def test_no_launcher_pattern_is_anchored_with_a_dollar():
    """`$` also matches before a final newline: the launcher side uses re.fullmatch (or
    \\Z), as the agent does, so no pattern in the package ends in a bare `$`."""
    offenders = []
    for path in sorted((ROOT / "imagebake").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"""re\.(compile|match|search)\(\s*r?f?["'].*\$["']""", line) \
                    and "re.M" not in line:  # multi-line search: `$` is each line's end
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# --- N8: one world-open rule for `launch --allow-cidr` and `authorize-ip --cidr` ---------

WORLD_WIDE = ["0.0.0.0/0", "0.0.0.0/1", "128.0.0.0/1", "64.0.0.0/2", "0.0.0.0/7", "::/0",
              "2000::/3", "::/1"]
NARROW = ["10.0.0.0/8", "203.0.113.0/24", "203.0.113.7/32", "2001:db8::/32"]
CHECKS = {
    "launch": lambda cidr, world: inputs.allow_cidr(cidr, allow_world=world),
    "authorize-ip": lambda cidr, world: inputs.authorize_cidr(cidr, world),
}


@pytest.mark.parametrize("command", sorted(CHECKS))
@pytest.mark.parametrize("cidr", WORLD_WIDE)
def test_a_range_wider_than_a_slash_8_needs_allow_world(command, cidr):
    with pytest.raises(ImagebakeError, match="--allow-world"):
        CHECKS[command](cidr, False)
    assert CHECKS[command](cidr, True) == cidr


@pytest.mark.parametrize("command", sorted(CHECKS))
@pytest.mark.parametrize("cidr", NARROW)
def test_a_slash_8_or_narrower_needs_no_flag(command, cidr):
    assert CHECKS[command](cidr, False) == cidr


@pytest.mark.parametrize("command", sorted(CHECKS))
def test_allow_world_without_a_wide_range_is_refused(command):
    """The flag says what it allows: given with a narrow range it is a mistake."""
    with pytest.raises(ImagebakeError, match="--allow-world"):
        CHECKS[command]("203.0.113.7/32", True)
