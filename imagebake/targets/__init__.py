"""Where clusters run: one package per target behind one interface (base.Target).

    targets.get("docker").launch(name="demo", slaves=4)
    targets.get(record["target"]).status(record)

docker/ (containers on one host), aws/ (EC2), qemu/ (VMs in a network namespace);
local_status.py is what the two local targets report the same way. Adding a target is
one package (its cluster.py defines TARGET_CLASS, a Target) plus one name in REGISTRY;
nothing above this package asks which target it talks to.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import ImagebakeError

if TYPE_CHECKING:
    from .base import Target

# name -> the package whose cluster.py defines TARGET_CLASS
REGISTRY: dict[str, str] = {name: f"{__name__}.{name}" for name in ("aws", "docker", "qemu")}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str, **hooks: Any) -> Target:
    """The target called NAME; HOOKS go to its constructor (tests, benchmarks)."""
    if name not in REGISTRY:
        raise ImagebakeError(f"unknown target {name!r}: choose one of {', '.join(names())}")
    module = importlib.import_module(f"{REGISTRY[name]}.cluster")
    return module.TARGET_CLASS(**hooks)


def find_unrecorded(name: str) -> tuple[Target | None, str]:
    """A target that can find cluster NAME without its local record (by its cloud tags),
    or None and why none could look (`destroy` without a record and --target)."""
    why = []
    for each in names():
        target = get(each)
        refusal = target.search_refusal()
        if refusal is None:
            return target, ""
        if refusal:
            why.append(refusal)
    return None, "; ".join(why) or "no target can search without a record"
