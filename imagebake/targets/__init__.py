"""Where clusters run: one package per target behind one interface (base.Target).

    targets.get("docker").launch(name="demo", slaves=4)
    targets.get(record["target"]).status(record)

docker/ (containers on one host), aws/ (EC2), qemu/ (VMs in a network namespace);
local_status.py is what the two local targets report the same way.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import ImagebakeError

if TYPE_CHECKING:
    from .base import Target

NAMES = ("aws", "docker", "qemu")


def get(name: str, **hooks: Any) -> Target:
    """The target called NAME; HOOKS go to its constructor (tests, benchmarks)."""
    if name not in NAMES:
        raise ImagebakeError(f"unknown target {name!r}: choose one of {', '.join(NAMES)}")
    module = importlib.import_module(f"{__name__}.{name}.cluster")
    return module.TARGET_CLASS(**hooks)
