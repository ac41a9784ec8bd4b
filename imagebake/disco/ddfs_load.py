"""`invoke ddfs-load`: files into a cluster's DDFS at copy speed, stored by a pusher that
runs inside the cluster.

The laptop streams every input (gzip and bz2 decompressed as a stream, zip members one by
one; nothing unpacked to disk, nothing held whole in memory) through the target's exec
channel to `ddfs_push.py`, run on the master as disco. The pusher cuts line-aligned blobs,
stores them with DDFS's own push protocol on several storage nodes at once, and updates
the tag ONCE at the end (or not at all: a failure, a bad input found midway or Ctrl-C leave
the tag as it was; blobs already stored and never tagged go with DDFS's garbage
collection). Blob names carry a digest of their content, so loading the same input under
the same tag again stores nothing new. See ddfs_push.py for the protocol.

Formats (`--chunk`): by default the blobs are the input's own lines (plain text), read by a
job with Disco's default map reader: `map(line, params)` gets each line (bytes on Python
3). With `--chunk` they are Disco's chunk format (`ddfs chunk`'s: compressed records); a job
must then read them with `map_reader=disco.worker.task_io.chain_reader`.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import json
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .. import targets
from ..errors import ImagebakeError
from . import ddfs_push

# Disco 0.5.4 master/src/ddfs/ddfs_util.erl: LEGAL_CHARS and NAME_MAX.
TAG_CHARS = set(":@-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
TAG_MAX = 511
# Bytes one input may unpack to (a zip or gzip bomb stops here, with one line).
MAX_UNPACKED = 100 * 10**9
S_IFMT, S_IFLNK = 0o170000, 0o120000
BLOB_MB = 16
PIECE = 4 << 20  # bytes per data frame
MB = 1_000_000
SCHEMES = ("", "file", "http", "https", "s3")
PUSHER = Path(ddfs_push.__file__)


class LoadFailed(ImagebakeError):
    """The load failed on the way (a storage node, a download): exit 1, tag unchanged."""

    exit_code = 1


def check_tag(tag: str) -> str:
    """A DDFS tag name DDFS accepts (`tag://` in front is allowed and dropped)."""
    name = tag[len("tag://"):] if isinstance(tag, str) and tag.startswith("tag://") else tag
    if not name or not isinstance(name, str) or set(name) - TAG_CHARS or len(name) > TAG_MAX:
        raise ImagebakeError(f"invalid DDFS tag {tag!r}: use letters, digits and _-:@ "
                             f"(at most {TAG_MAX}), e.g. data:2grams")
    return name


def blob_prefix(name: str) -> str:
    """A DDFS-legal blob name prefix for an input called NAME (its digest is appended)."""
    base = re.sub(r"\.(gz|bz2|zip)$", "", PurePosixPath(name).name)
    safe = "".join(c if c in TAG_CHARS else "_" for c in base)[:100]
    return safe or "input"


# ---------------------------------------------------------------- zip members (issue 21 N2)
def check_member(name: str, source: str) -> str:
    """NAME if the zip member stays inside the folder it would be unpacked to; one line
    refusing `../x`, `/x`, `a/../../x` or `C:x` (such names once made the laptop read and
    upload its own files)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    depth, escapes = 0, False
    for part in parts:
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        escapes = escapes or depth < 0
    if name.startswith(("/", "\\")) or ":" in (parts[0] if parts else "") or escapes:
        raise ImagebakeError(f"zip member {name!r} of {source} resolves outside the folder it "
                             "would be unpacked to: refused, nothing stored")
    return name


def safe_members(archive: zipfile.ZipFile, source: str) -> list[zipfile.ZipInfo]:
    """The file members of ARCHIVE, each checked: inside its folder, not a symlink, and all
    of them together at most MAX_UNPACKED bytes; else one line naming the member."""
    members, total = [], 0
    for info in archive.infolist():
        check_member(info.filename, source)
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


# ---------------------------------------------------------------- inputs
@dataclass
class Source:
    """One --input: a local path (streamed from here) or a URL (fetched by the cluster)."""

    given: str
    path: Path | None = None
    url: str = ""
    sha256: str = ""

    @property
    def shown(self) -> str:
        """The input as printed: a URL without its query (a presigned URL's signature)."""
        return self.url.split("?", 1)[0] if self.url else self.given


def check_sources(sources: list[str], sha256: list[str] | None = None) -> list[Source]:
    """Every input exists (local) or has a scheme the cluster fetches, and each --sha256 is
    64 hex digits (or `-` for none), one per input; before anything is stored."""
    if not sources:
        raise ImagebakeError("nothing to load: pass --input PATH_OR_URL (repeatable)")
    sums = list(sha256 or [])
    if sums and len(sums) != len(sources):
        raise ImagebakeError(f"{len(sums)} --sha256 for {len(sources)} --input: give one per "
                             "input, in the same order (`-` for an input without one)")
    checked = []
    for index, given in enumerate(sources):
        digest = (sums[index] if sums else "-").lower()
        if digest != "-" and not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ImagebakeError(f"--sha256 {sums[index]!r}: 64 hex digits, or - for none")
        digest = "" if digest == "-" else digest
        scheme = urllib.parse.urlparse(given).scheme
        if scheme not in SCHEMES:
            raise ImagebakeError(f"unsupported input {given!r}: give a path, an http(s):// URL "
                                 "or s3://bucket/key")
        if scheme in ("http", "https", "s3"):
            parts = urllib.parse.urlparse(given)
            if not parts.netloc or (scheme == "s3" and not parts.path.strip("/")):
                raise ImagebakeError(f"input {given!r}: no host or key in the URL")
            checked.append(Source(given, url=given, sha256=digest))
            continue
        path = Path(urllib.parse.urlparse(given).path if scheme else given)
        if not path.is_file():
            raise ImagebakeError(f"input not found: {given} (nothing stored)")
        checked.append(Source(given, path=path, sha256=digest))
    return checked


def check_local(source: Source) -> None:
    """Before anything is sent: a zip's members are all safe, and the file's sha256 (of
    the bytes as given, before unpacking) is the one asked for."""
    if source.path is None:
        return
    if source.path.suffix == ".zip":
        try:
            with zipfile.ZipFile(source.path) as archive:
                safe_members(archive, source.path.name)
        except zipfile.BadZipFile as exc:
            raise ImagebakeError(f"{source.given}: not a zip file ({exc})") from None
    if source.sha256:
        from ..bake.hashing import file_digest

        got = file_digest(source.path)
        if got != source.sha256:
            raise ImagebakeError(f"checksum mismatch for {source.given}: sha256 {got}, "
                                 f"expected {source.sha256}; nothing stored")


class Capped:
    """A read-only stream that refuses to give more than MAX_UNPACKED bytes in all."""

    def __init__(self, stream: BinaryIO, source: str, budget: list[int]) -> None:
        self.stream, self.source, self.budget = stream, source, budget

    def read(self, size: int = -1) -> bytes:
        block = self.stream.read(size)
        self.budget[0] -= len(block)
        if self.budget[0] < 0:
            raise ImagebakeError(f"{self.source} unpacks to more than {MAX_UNPACKED:,} bytes "
                                 "(a decompression bomb?): refused, tag unchanged")
        return block


@contextmanager
def _opened(path: Path) -> Iterator[list[tuple[str, BinaryIO]]]:
    """(name, decompressed stream) of each part of the local file PATH, opened lazily."""
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            yield [(info.filename, _Lazy(archive, info))
                   for info in safe_members(archive, path.name)]
    else:
        with (opener or open)(path, "rb") as stream:
            yield [(path.name, stream)]


class _Lazy:
    """A zip member opened at its first read and closed at its end."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        self.archive, self.info, self.stream = archive, info, None

    def read(self, size: int = -1) -> bytes:
        if self.stream is None:
            self.stream = self.archive.open(self.info)
        block = self.stream.read(size)
        if not block:
            self.stream.close()
        return block


# ---------------------------------------------------------------- the stream to the pusher
def frame(kind: str, payload: bytes = b"") -> bytes:
    return ddfs_push.HEADER.pack(kind.encode("ascii"), len(payload)) + payload


def check_disco(record: dict) -> None:
    rc, _ = targets.get(record["target"]).exec(record, "command -v ddfs")
    if rc != 0:
        raise ImagebakeError(f"no Disco in the images of cluster {record['name']!r} (baked with "
                             "disco_source=none): there is no DDFS to load into; bake with the "
                             "vendored Disco (`invoke bake`) and launch again")


def pusher_command(tag: str, blob_bytes: int, workers: int, chunk: bool,
                   replicas: int = 0) -> str:
    """The shell line that runs the pusher on the master (its code given with -c: nothing
    is written on the master). REPLICAS 0: DDFS's own setting."""
    args = [tag, str(blob_bytes), str(workers), "chunks" if chunk else "blobs"]
    return (f"IMAGEBAKE_REPLICAS={int(replicas)} exec python3 -c "
            f"{shlex.quote(PUSHER.read_text())} " + " ".join(map(shlex.quote, args)))


@dataclass
class Outcome:
    """What the pusher reported: progress while it runs, then done or error."""

    received: int = 0
    stored: int = 0
    written: int = 0
    blobs: int = 0
    done: dict = field(default_factory=dict)
    error: str = ""
    stderr: list[str] = field(default_factory=list)

    def take(self, line: str) -> None:
        try:
            fields = json.loads(line)
        except ValueError:
            self.stderr.append(line.strip())
            return
        if not isinstance(fields, dict):
            return
        if fields.get("done"):
            self.done = fields
        elif "error" in fields:
            self.error = str(fields["error"]).splitlines()[0][:300] if fields["error"] else "?"
        else:
            for key in ("received", "stored", "written", "blobs"):
                setattr(self, key, int(fields.get(key, getattr(self, key))))


class Progress:
    """Bytes sent and MB/s on stderr: one updating line on a terminal, else every 10 s."""

    def __init__(self, label: str, out=None) -> None:
        self.label, self.out = label, out or sys.stderr
        self.began = time.monotonic()
        self.last = 0.0
        self.live = self.out.isatty()

    def show(self, outcome: Outcome, sent: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.5 if self.live else 10):
            return
        self.last = now
        took = max(now - self.began, 1e-6)
        text = (f"{self.label}: {sent / MB:.1f} MB sent, {sent / MB / took:.1f} MB/s, "
                f"{outcome.stored / MB:.1f} MB stored in {outcome.blobs} blob(s)")
        if self.live:
            self.out.write("\r" + text + ("\n" if final else ""))
        else:
            self.out.write(text + "\n")
        self.out.flush()


def workers_for(record: dict) -> int:
    """Pushes in flight: two per storage node, 2 to 8."""
    return max(2, min(8, 2 * len(record.get("nodes", []))))


def _send(proc: subprocess.Popen, items: list[Source], progress: Progress,
          outcome: Outcome) -> int:
    """Write every input as frames; returns the bytes sent. A pusher that stopped reading
    (it failed) ends the sending quietly: its error line says why."""
    sent = 0
    budget = [MAX_UNPACKED]
    pipe = proc.stdin
    try:
        for source in [s for s in items if not s.url]:  # local inputs first: one stream
            with _opened(source.path) as parts:
                for name, stream in parts:
                    capped = Capped(stream, source.path.name, budget)
                    pipe.write(frame("F", blob_prefix(name).encode()))
                    size = 0
                    while True:
                        block = capped.read(PIECE)
                        if not block:
                            break
                        pipe.write(ddfs_push.HEADER.pack(b"D", len(block)))
                        pipe.write(block)  # no copy of the block into a frame
                        size += len(block)
                        sent += len(block)
                        progress.show(outcome, sent)
                    pipe.write(frame("E", json.dumps({"bytes": size}).encode()))
        for source in [s for s in items if s.url]:
            pipe.write(frame("U", json.dumps(url_item(source)).encode()))
        pipe.write(frame("Z", json.dumps({"inputs": len(items)}).encode()))
        pipe.flush()  # left open until the pusher ends: its end means Ctrl-C (ddfs_push)
    except (BrokenPipeError, ConnectionResetError):
        pass
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ImagebakeError(f"reading the input failed: {exc}; tag unchanged") from None
    return sent


def url_item(source: Source) -> dict:
    """The U frame of an input the cluster downloads (see ddfs_url)."""
    from . import ddfs_url

    return ddfs_url.item(source, blob_prefix)


def load(record: dict, sources: list[str], tag: str, chunk: bool = False,
         blob_mb: int = BLOB_MB, sha256: list[str] | None = None,
         label: str = "ddfs-load", replicas: int = 0) -> dict:
    """Store every source under TAG with one tag update; returns the pusher's summary
    (inputs, blobs, new, skipped, replicas, bytes, written, seconds). Bad input (a missing
    file, a bad tag or --sha256, an unsafe zip, a cluster without Disco) is refused before
    anything is sent."""
    tag = check_tag(tag)
    items = check_sources(sources, sha256)
    if not 1 <= int(blob_mb) <= 1024:
        raise ImagebakeError(f"--blob-mb {blob_mb}: 1 to 1024")
    for item in items:
        check_local(item)
    prepare_urls(record, items)
    check_disco(record)
    target = targets.get(record["target"])
    argv = target.exec_argv(record, pusher_command(tag, int(blob_mb) * 2**20,
                                                   workers_for(record), chunk, replicas),
                            user="disco")
    outcome, progress = Outcome(), Progress(label)
    began = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    readers = [threading.Thread(target=_read, args=(proc.stdout, outcome.take), daemon=True),
               threading.Thread(target=_read, args=(proc.stderr, outcome.stderr.append),
                                daemon=True)]
    for reader in readers:
        reader.start()
    try:
        sent = _send(proc, items, progress, outcome)
        proc.wait()
        with contextlib.suppress(OSError):
            proc.stdin.close()
    except BaseException:  # bad input found midway, Ctrl-C: the pusher never sees Z
        with contextlib.suppress(OSError):
            proc.stdin.close()  # the pusher reads the end of its stream and stops
        proc.kill()
        proc.wait()
        raise
    finally:
        for reader in readers:
            reader.join(timeout=10)
    progress.show(outcome, sent, final=True)
    if outcome.error or not outcome.done:
        why = outcome.error or _last(outcome.stderr) or f"the pusher exited {proc.returncode}"
        raise LoadFailed(f"ddfs-load failed: {why}; tag {tag} not changed")
    return {**outcome.done, "seconds": round(time.monotonic() - began, 2)}


def prepare_urls(record: dict, items: list[Source]) -> None:
    """s3:// inputs become short-lived presigned URLs here (the user's credentials never
    leave the laptop); http(s) inputs are checked. See ddfs_url."""
    if any(item.url for item in items):
        from . import ddfs_url

        ddfs_url.prepare(items)


def _read(stream: BinaryIO, take) -> None:
    for raw in iter(stream.readline, b""):
        take(raw.decode("utf-8", "replace"))


def _last(lines: list[str]) -> str:
    lines = [line for line in lines
             if line.strip() and "Warning" not in line and "warnings.warn" not in line]
    return (lines or [""])[-1][-200:]


def summary(done: dict, tag: str) -> str:
    """The one line `invoke ddfs-load` prints at the end."""
    mb = done.get("bytes", 0) / MB
    rate = mb / max(done.get("seconds", 0), 1e-6)
    kept = f", {done['skipped']} already there" if done.get("skipped") else ""
    copies = f", {done['replicas']} replica(s) each" if done.get("new") else ""
    changed = "" if done.get("new") else " (tag unchanged)"
    return (f"stored {done.get('inputs', 0)} input(s), {mb:.1f} MB, as {done.get('new', 0)} new "
            f"blob(s){kept} under tag://{tag}{changed} ({rate:.1f} MB/s{copies})")
