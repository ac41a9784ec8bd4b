"""Content hash of a bake: everything that decides what goes into an image.

Inputs: the Packer templates, the provision scripts and Disco patches (provision/disco/),
vendor/disco.lock (which pins every upstream archive by its sha256: the archives
themselves are not committed, vendor.py checks them against it), the agent's .py files,
any extra file (a Disco tarball), the target and role, and the effective
variables as sorted k=v lines. Files are named by their path relative to the
repository, with '/' separators, and hashed by content only (no mtimes, no
modes), so the hash is the same on every machine and every run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

HASH_VERSION = "imagebake-content-hash-v1"

# (directory, glob) pairs relative to the repository root.
INPUT_GLOBS = (
    ("packer", "**/*.pkr.hcl"),
    ("packer/files", "*"),
    ("provision", "*.sh"),
    ("provision/disco", "**/*"),  # Disco's build and its patches
    ("vendor", "disco.lock"),  # the pinned upstream archives, by their sha256 in the lock
    ("imagebake/agent", "*.py"),
)


def input_files(root: Path) -> list[Path]:
    """Every input file under ROOT, sorted by relative path."""
    root = Path(root)
    found: set[Path] = set()
    for folder, pattern in INPUT_GLOBS:
        base = root / folder
        if base.is_dir():
            found.update(p for p in base.glob(pattern)
                         if p.is_file() and "__pycache__" not in p.parts)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _var_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}={_var_text(v)}" for k, v in sorted(value.items())) + "}"
    return str(value)


def content_hash(root: Path, target: str, role: str, variables: Mapping[str, object],
                 extra_files: Iterable[Path] = ()) -> str:
    """sha256 (hex) of all bake inputs for one (target, role)."""
    root = Path(root)
    h = hashlib.sha256()

    def line(*parts: str) -> None:
        h.update("\0".join(parts).encode("utf-8") + b"\n")

    line(HASH_VERSION)
    line("target", target)
    line("role", role)
    for path in input_files(root):
        line("file", path.relative_to(root).as_posix(), file_digest(path))
    for path in sorted({Path(p) for p in extra_files}, key=lambda p: p.name):
        # outside the repository: by name and content (its directory is not an input)
        line("extra", path.name, file_digest(path))
    for key in sorted(variables):
        line("var", f"{key}={_var_text(variables[key])}")
    return h.hexdigest()
