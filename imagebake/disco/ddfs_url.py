"""Inputs the cluster downloads itself (http(s):// and s3:// for `invoke ddfs-load`)."""

from __future__ import annotations

from ..errors import ImagebakeError


def prepare(items: list) -> None:
    """Refused for now: the slaves' downloader is not in this version yet."""
    first = next(item for item in items if item.url)
    raise ImagebakeError(f"input {first.shown}: URL inputs are not supported yet; download it "
                         "and pass the file")


def item(source) -> dict:
    raise ImagebakeError(f"input {source.shown}: URL inputs are not supported yet")
