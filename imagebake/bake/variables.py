"""The bake's inputs: Packer variables (defaults, who may set which, which ones a
target's images depend on) and the checks of `invoke bake` flags, all before any work."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import ImagebakeError
from .records import ROOT

PACKER_DIR = ROOT / "packer"
ROLES = ("master", "node")
DEFAULT_BASE = "imagebake/base:bookworm"
# Always passed explicitly, so `--var disco_ref=0.5.4` hashes like no --var at all.
DEFAULTS: dict[str, str] = {
    "disco_source": "vendored",  # vendor/disco.lock's archives (packer/variables.pkr.hcl)
    "disco_ref": "0.5.4",
    "docker_base": DEFAULT_BASE,
}
# Variables the wrapper owns: the user cannot set them.
WRAPPER_VARS = ("content_hash", "manifest_path", "agent_dir", "qemu_accelerator",
                "qemu_seed_dir", "qemu_ssh_username", "qemu_ssh_key")
# Every target's images depend on these; each target names the rest of its own
# (build.ImageKind.variables: others would change its hash for nothing).
COMMON_VARS = ("disco_source", "disco_ref")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DECLARED = re.compile(r'^variable\s+"([^"]+)"', re.M)


def declared_variables(template_dir: Path = PACKER_DIR) -> list[str]:
    text = "\n".join(p.read_text() for p in sorted(Path(template_dir).glob("*.pkr.hcl")))
    return sorted(_DECLARED.findall(text))


def parse_vars(items: Sequence[str]) -> dict[str, str]:
    """["k=v", ...] -> {k: v}; a malformed or repeated item is one-line error."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not _VAR_NAME.fullmatch(key):
            raise ImagebakeError(
                f"malformed --var {item!r}: expected key=value, e.g. --var disco_source=none")
        if key in out:
            raise ImagebakeError(f"--var {key} given twice")
        if "\n" in value:
            raise ImagebakeError(f"--var {key}: the value must be one line")
        out[key] = value
    return out


def check(only: str | None, variables: Mapping[str, str]) -> tuple[str, ...]:
    """The roles to bake, or a one-line error for an unknown role or variable."""
    if only is not None and only not in ROLES:
        raise ImagebakeError(f"unknown role {only!r} for --only: choose master or node")
    declared = declared_variables()
    for key in variables:
        if key in WRAPPER_VARS:
            raise ImagebakeError(f"--var {key} is set by imagebake itself")
        if key not in declared:
            settable = ", ".join(v for v in declared if v not in WRAPPER_VARS)
            raise ImagebakeError(f"unknown variable {key!r}: choose one of {settable}")
    return (only,) if only else ROLES


def disco_tarball(variables: dict[str, str]) -> list[Path]:
    """A local Disco tarball (or another disco.lock) becomes an absolute path and a hash
    input; vendored (vendor/ is hashed with the templates), none and git URLs stay as given."""
    source = variables["disco_source"]
    if source in ("none", "vendored", "offline") or "://" in source or source.startswith("git@"):
        return []
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise ImagebakeError(f"disco_source {source}: no such file (expected vendored, none, a "
                             "git URL, a Disco source tarball or a disco.lock)")
    variables["disco_source"] = str(path)
    return [path]


def hashed(names: Sequence[str], effective: Mapping[str, str]) -> dict[str, str]:
    """The variables NAMES (what a target's images depend on) of EFFECTIVE: the content
    hash's variable inputs."""
    return {k: v for k, v in effective.items() if k in names}
