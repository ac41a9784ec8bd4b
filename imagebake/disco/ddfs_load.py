"""`invoke ddfs-load`: push files into a cluster's DDFS through its master.

Each input (a local path or an http(s) URL; .gz, .bz2 and .zip are unpacked on
the way, as the Google Books n-gram files come zipped) is streamed to the
master and stored with `ddfs chunk TAG FILE` as the disco user.
"""

from __future__ import annotations

import bz2
import gzip
import os
import shlex
import shutil
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import BinaryIO

from .. import targets
from ..errors import ImagebakeError
from ..progress import progress_bar

TAG_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-:.@")


def check_tag(tag: str) -> str:
    if not tag or set(tag) - TAG_CHARS:
        raise ImagebakeError(f"invalid DDFS tag {tag!r}: use letters, digits and _-:.@")
    return tag


def _fetch(source: str, folder: Path) -> Path:
    """A local copy of SOURCE (downloaded when it is a URL)."""
    scheme = urllib.parse.urlparse(source).scheme
    if scheme in ("http", "https"):
        target = folder / (Path(urllib.parse.urlparse(source).path).name or "download")
        try:
            with urllib.request.urlopen(source, timeout=60) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise ImagebakeError(f"cannot download {source}: {exc}") from None
        return target
    if scheme not in ("", "file"):
        raise ImagebakeError(f"unsupported input {source!r}: give a path or an http(s) URL")
    path = Path(urllib.parse.urlparse(source).path if scheme else source)
    if not path.is_file():
        raise ImagebakeError(f"input not found: {source}")
    return path


def _plain(path: Path, folder: Path) -> list[Path]:
    """Uncompressed text file(s) for PATH."""
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix)
    if opener:
        out = folder / path.with_suffix("").name
        with opener(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return [out]
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            archive.extractall(folder, members)
        return [folder / m for m in members]
    return [path]


def push(record: dict, tag: str, name: str, stream: BinaryIO) -> str:
    """Stream one plain file to the master and `ddfs chunk` it under TAG."""
    remote = f"/tmp/imagebake-ddfs-{os.getpid()}-{Path(name).name}"
    command = (f"cat > {shlex.quote(remote)} && ddfs chunk {shlex.quote(tag)} "
               f"{shlex.quote(remote)}; rc=$?; rm -f {shlex.quote(remote)}; exit $rc")
    rc, out = targets.get(record["target"]).exec(record, command, user="disco", stdin=stream)
    if rc != 0:
        last = (out.strip().splitlines() or ["no output"])[-1]
        raise ImagebakeError(f"ddfs chunk of {name} failed on the master: {last}")
    return out


def load(record: dict, sources: list[str], tag: str) -> int:
    """Push every source under TAG; returns the number of files stored."""
    check_tag(tag)
    if not sources:
        raise ImagebakeError("nothing to load: pass --input PATH_OR_URL (repeatable)")
    rc, _ = targets.get(record["target"]).exec(record, "command -v ddfs")
    if rc != 0:
        raise ImagebakeError(f"Disco is not in the images of {record['name']!r} "
                             "(offline bake): there is no DDFS to load into")
    stored = 0
    with tempfile.TemporaryDirectory() as tmp, progress_bar(f"ddfs {tag}", len(sources)) as done:
        for index, source in enumerate(sources):
            for plain in _plain(_fetch(source, Path(tmp)), Path(tmp)):
                with open(plain, "rb") as stream:
                    push(record, tag, plain.name, stream)
                stored += 1
            done(index + 1)
    return stored
