"""`invoke ddfs-load`: push files into a cluster's DDFS through its master.

Each input (a local path or an http(s) URL; .gz, .bz2 and .zip are unpacked on
the way, as the Google Books n-gram files come zipped) is streamed to the
master and stored with `ddfs chunk TAG FILE` as the disco user.
"""

from __future__ import annotations

import bz2
import gzip
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

# Disco 0.5.4 master/src/ddfs/ddfs_util.erl: LEGAL_CHARS and NAME_MAX.
TAG_CHARS = set(":@-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
TAG_MAX = 511


def check_tag(tag: str) -> str:
    """A DDFS tag name DDFS accepts (`tag://` in front is allowed and dropped)."""
    name = tag[len("tag://"):] if isinstance(tag, str) and tag.startswith("tag://") else tag
    if not name or not isinstance(name, str) or set(name) - TAG_CHARS or len(name) > TAG_MAX:
        raise ImagebakeError(f"invalid DDFS tag {tag!r}: use letters, digits and _-:@ "
                             f"(at most {TAG_MAX}), e.g. data:2grams")
    return name


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


# Bytes one input may unpack to (a zip or gzip bomb stops here, with one line).
MAX_UNPACKED = 100 * 10**9
S_IFMT, S_IFLNK = 0o170000, 0o120000


def member_inside(name: str, folder: Path) -> Path:
    """Where zip member NAME lands under FOLDER, or one line refusing a name that resolves
    outside it (`../x`, `/x`, `a/../../x`): such a name would otherwise make the laptop read
    and upload one of its own files (issue 21 N2)."""
    root = folder.resolve()
    where = (root / name.replace("\\", "/").lstrip("/")).resolve()
    if name.startswith(("/", "\\")) or not where.is_relative_to(root) or where == root:
        raise ImagebakeError(f"zip member {name!r} resolves outside the folder it is unpacked "
                             "to: refused, nothing stored")
    return where


def safe_members(archive: zipfile.ZipFile, folder: Path, source: str) -> list[zipfile.ZipInfo]:
    """The file members of ARCHIVE, each checked: inside FOLDER, not a symlink, and all of
    them together at most MAX_UNPACKED bytes; else one line naming the member."""
    members, total = [], 0
    for info in archive.infolist():
        member_inside(info.filename, folder)
        if (info.external_attr >> 16) & S_IFMT == S_IFLNK:
            raise ImagebakeError(f"zip member {info.filename!r} of {source} is a symlink: "
                                 "refused, nothing stored")
        if info.is_dir():
            continue
        total += info.file_size
        if total > MAX_UNPACKED:
            raise ImagebakeError(f"{source} unpacks to more than {MAX_UNPACKED:,} bytes "
                                 "(a zip bomb?): refused, nothing stored")
        members.append(info)
    return members


def copy_capped(src: BinaryIO, dst: BinaryIO, source: str, budget: int) -> int:
    """Copy SRC to DST; one line when the unpacked bytes go past BUDGET. Returns the count."""
    done = 0
    while True:
        block = src.read(1 << 20)
        if not block:
            return done
        done += len(block)
        if done > budget:
            raise ImagebakeError(f"{source} unpacks to more than {MAX_UNPACKED:,} bytes "
                                 "(a decompression bomb?): refused, nothing stored")
        dst.write(block)


def _plain(path: Path, folder: Path) -> list[Path]:
    """Uncompressed text file(s) for PATH, at most MAX_UNPACKED bytes in all."""
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix)
    if opener:
        out = folder / path.with_suffix("").name
        with opener(path, "rb") as src, open(out, "wb") as dst:
            copy_capped(src, dst, path.name, MAX_UNPACKED)
        return [out]
    if path.suffix == ".zip":
        out, budget = [], MAX_UNPACKED
        with zipfile.ZipFile(path) as archive:
            for info in safe_members(archive, folder, path.name):
                where = member_inside(info.filename, folder)
                where.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(where, "wb") as dst:
                    budget -= copy_capped(src, dst, path.name, budget)
                out.append(where)
        return out
    return [path]


def push(record: dict, tag: str, files: list[tuple[str, BinaryIO]]) -> str:
    """Stream FILES ((name, binary stream) pairs) to a private directory on the master,
    then store them all with ONE `ddfs chunk TAG ...` as the disco user: DDFS writes the
    blobs and only then updates the tag once, so a failure leaves the tag as it was (the
    orphan blobs go with DDFS's garbage collection). The directory is removed either way."""
    target = targets.get(record["target"])
    rc, out = target.exec(record, "mktemp -d /tmp/imagebake-ddfs.XXXXXX", user="disco")
    folder = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
    if not folder.startswith("/tmp/imagebake-ddfs."):
        raise ImagebakeError(f"cannot make a directory on the master: {out.strip()[-200:]}")
    try:
        remote = []
        for index, (name, stream) in enumerate(files):
            path = f"{folder}/{index:04d}-{Path(name).name}"
            rc, out = target.exec(record, f"cat > {shlex.quote(path)}", user="disco",
                                  stdin=stream)
            if rc != 0:
                raise ImagebakeError(f"copying {name} to the master failed: "
                                     f"{_last(out)}; nothing stored under {tag}")
            remote.append(shlex.quote(path))
        rc, out = target.exec(record, f"ddfs chunk {shlex.quote(tag)} {' '.join(remote)}",
                              user="disco")
        if rc != 0:
            raise ImagebakeError(f"ddfs chunk failed on the master: {_last(out)}; the tag "
                                 f"{tag} was not changed")
        return out
    finally:
        target.exec(record, f"rm -rf {shlex.quote(folder)}", user="disco")


def _last(out: str) -> str:
    lines = [line for line in out.strip().splitlines()
             if line.strip() and "Warning" not in line and "warnings.warn" not in line]
    return (lines or ["no output"])[-1][-200:]


def check_sources(sources: list[str]) -> list[str]:
    """Every local input exists and every scheme is known, before anything is stored."""
    if not sources:
        raise ImagebakeError("nothing to load: pass --input PATH_OR_URL (repeatable)")
    for source in sources:
        scheme = urllib.parse.urlparse(source).scheme
        if scheme in ("http", "https"):
            continue
        if scheme not in ("", "file"):
            raise ImagebakeError(f"unsupported input {source!r}: give a path or an http(s) URL")
        path = Path(urllib.parse.urlparse(source).path if scheme else source)
        if not path.is_file():
            raise ImagebakeError(f"input not found: {source} (nothing stored)")
    return sources


def check_disco(record: dict) -> None:
    rc, _ = targets.get(record["target"]).exec(record, "command -v ddfs")
    if rc != 0:
        raise ImagebakeError(f"no Disco in the images of cluster {record['name']!r} (baked with "
                             "disco_source=none): there is no DDFS to load into; bake with the "
                             "vendored Disco (`invoke bake`) and launch again")


def load(record: dict, sources: list[str], tag: str) -> int:
    """Push every source under TAG in one DDFS tag update; returns the number of files.
    Bad input (a missing file, a bad tag, a cluster without Disco) is refused before
    anything is copied."""
    tag = check_tag(tag)
    check_sources(sources)
    check_disco(record)
    with tempfile.TemporaryDirectory() as tmp, progress_bar(f"ddfs {tag}", len(sources)) as done:
        plain: list[Path] = []
        for index, source in enumerate(sources):
            plain += _plain(_fetch(source, Path(tmp)), Path(tmp))
            done(index + 1)
        streams = [open(p, "rb") for p in plain]
        try:
            push(record, tag, [(p.name, s) for p, s in zip(plain, streams)])
        finally:
            for stream in streams:
                stream.close()
    return len(plain)
