"""Writing the launcher's secret files: cluster records (join token, Erlang cookie), pinned
known_hosts, specs handed to a target.

One way for all of them: the directory is 0700 and ours (an existing loose one is
tightened, another user's is refused); the content goes to a new temp file with a random
name, created with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600 (a link or file someone planted
is never opened), then os.replace()s the target: a link at the target is replaced, never
written through.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from .errors import ImagebakeError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def private_dir(path: str | os.PathLike) -> Path:
    """PATH as a directory only this user can enter: made 0700 when missing (missing
    parents as `mkdir -p` would); an existing one of ours is tightened to 0700; another user's, or
    something that is not a directory, is a one-line error. PATH itself may be a link
    (a user may point IMAGEBAKE_STATE_DIR anywhere): the checks apply to where it leads."""
    path = Path(path)
    missing = []
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700 if folder == path else 0o777)  # parents: as mkdir -p
        except FileExistsError:
            pass
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except NotADirectoryError:
        raise ImagebakeError(f"{path} is not a directory: move it away (imagebake keeps "
                             "its cluster records there)") from None
    except OSError as exc:
        raise ImagebakeError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISDIR(info.st_mode):
            raise ImagebakeError(f"{path} is not a directory: move it away")
        if info.st_uid != os.geteuid():
            raise ImagebakeError(
                f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}): "
                "imagebake keeps cluster secrets there; set IMAGEBAKE_STATE_DIR to a "
                "directory of yours")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o700)
    finally:
        os.close(fd)
    return path


def write_private(path: str | os.PathLike, data: str | bytes, mode: int = 0o600) -> Path:
    """Replace PATH with DATA, atomically, mode MODE (0600), in a private_dir()."""
    path = Path(path)
    folder = private_dir(path.parent)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    for _ in range(16):
        tmp = folder / f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o600)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 16 random 64-bit names taken
        raise ImagebakeError(f"cannot create a temp file in {folder}")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def read_private(path: str | os.PathLike) -> str | None:
    """The text of a file write_private wrote, or None when there is none: never read
    through a link or from anything but a regular file (either reads as no file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read().decode("utf-8", "replace")


def read_known_hosts(path: str | os.PathLike) -> dict[str, str]:
    """host -> "type base64" for every host a known_hosts file at PATH pins ({} when there
    is no file): the launcher's store of pinned host keys, written by write_private."""
    text = read_private(path) or ""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and not line.startswith("#"):
            for host in words[0].split(","):
                pins[host] = f"{words[1]} {words[2]}"
    return pins
