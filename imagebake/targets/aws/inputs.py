"""Checks of launch flags that need no AWS call; each failure is one line."""

from __future__ import annotations

import ipaddress
import re

from ...errors import ImagebakeError
from ...validate import parse_count

MAX_SLAVES = 64
INSTANCE_TYPE_RE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+")
KEY_NAME_MAX = 255


def slave_count(value: object, flag: str = "--slaves") -> int:
    if isinstance(value, bool):
        raise ImagebakeError(f"{flag} must be a whole number, not {value!r}")
    return parse_count(value, flag, 1, MAX_SLAVES)


def workers(value: object) -> int | None:
    if value is None:
        return None
    return parse_count(value, "--workers-per-node", 1, 256)


WORLD_PREFIX = 8  # a range wider than a /8 (more than 16.7 million addresses) is "the world"


def allow_cidr(value: str, flag: str = "--allow-cidr", allow_world: bool = False) -> str:
    """A CIDR, strictly (no host bits). One rule for `launch --allow-cidr` and
    `authorize-ip --cidr`: a range wider than /8 (0.0.0.0/0, 0.0.0.0/1, ::/0 ...) only
    together with --allow-world, and --allow-world only with such a range."""
    text = str(value).strip()
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ImagebakeError(
                f"{flag} {value!r} is not a CIDR: write e.g. 203.0.113.7/32") from None
        if loose.prefixlen == 0:
            raise ImagebakeError(
                f"{flag} {value!r} would open the cluster to every address: "
                f"write {loose} if you really mean that, else your address/32") from None
        raise ImagebakeError(
            f"{flag} {value!r} has host bits set: did you mean {loose}?") from None
    wide = network.prefixlen < WORLD_PREFIX
    if wide and not allow_world:
        raise ImagebakeError(
            f"{flag} {network} opens SSH and the agent port to a range wider than "
            f"/{WORLD_PREFIX}: add --allow-world if you really mean that, else pass your "
            "address/32")
    if allow_world and not wide:
        raise ImagebakeError(f"--allow-world goes only with a range wider than "
                             f"/{WORLD_PREFIX} (e.g. 0.0.0.0/0); {network} needs no flag")
    if "/" not in text:
        # a bare address: the caller means that one host
        return f"{network.network_address}/{network.max_prefixlen}"
    return str(network)


def checked_cidr(value: str | None, allow_world: bool, flag: str) -> str | None:
    """The range FLAG names, checked by allow_cidr's rule (None: the caller's address,
    found later; --allow-world alone is refused)."""
    if value is None:
        if allow_world:
            raise ImagebakeError(f"--allow-world goes with {flag} 0.0.0.0/0 (or another "
                                 f"range wider than /{WORLD_PREFIX}); without {flag} your "
                                 "own address is allowed")
        return None
    return allow_cidr(value, flag, allow_world)


def authorize_cidr(value: str | None, allow_world: bool) -> str | None:
    """`authorize-ip --cidr`: the same rule as `launch --allow-cidr`."""
    return checked_cidr(value, allow_world, "--cidr")


def instance_type(value: str, flag: str) -> str:
    if not isinstance(value, str) or not INSTANCE_TYPE_RE.fullmatch(value):
        raise ImagebakeError(
            f"{flag} {value!r} is not an instance type: write e.g. t3.medium")
    return value


def key_name(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > KEY_NAME_MAX or any(ord(c) < 32 for c in value):
        raise ImagebakeError(f"--key-name {value!r} is not a key pair name")
    return value


def spot_roles(spot: bool, spot_master: bool) -> tuple[str, ...]:
    """The roles that run on spot: `--spot` the slaves (the master stays on demand, so an
    interruption costs a slave, not the cluster); `--spot-master` adds the master."""
    if spot_master and not spot:
        raise ImagebakeError("--spot-master goes with --spot: it puts the master on spot "
                             "too, and its interruption ends the whole cluster")
    return ("master", "node") if spot_master else ("node",) if spot else ()


def resource_id(value: str | None, prefix: str, flag: str) -> str | None:
    if value is None:
        return None
    if not re.fullmatch(rf"{prefix}-[0-9a-f]{{8,17}}", str(value)):
        raise ImagebakeError(f"{flag} {value!r} is not a {prefix}-... id")
    return str(value)
