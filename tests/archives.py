"""Crafted zip archives shared by the unit and the cluster tests of ddfs-load."""

from __future__ import annotations

import zipfile
from pathlib import Path


def zip_of(path: Path, members) -> Path:
    """A zip at PATH of MEMBERS: (name, bytes) pairs, or (name, bytes, unix mode) for a
    symlink."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, *mode in members:
            info = zipfile.ZipInfo(name)
            if mode:
                info.create_system = 3
                info.external_attr = mode[0] << 16
            archive.writestr(info, data)
    return path
