"""Small file helpers: atomic write-if-changed, in-place write, JSON state."""

import errno
import json
import os


def read_text(path, default=None):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8")
    except (IOError, OSError) as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return default
        raise


def makedirs(path, mode=0o755):
    try:
        os.makedirs(path, mode)
    except OSError as exc:
        if exc.errno != errno.EEXIST or not os.path.isdir(path):
            raise


def write_atomic(path, text, mode=0o644, dir_mode=0o755):
    """Write text to path via tmp + os.replace when the content differs.

    Returns True when the file was (re)written. The mode is applied either way.
    """
    data = text.encode("utf-8") if not isinstance(text, bytes) else text
    current = None
    try:
        with open(path, "rb") as handle:
            current = handle.read()
    except (IOError, OSError) as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise
    if current == data:
        if (os.stat(path).st_mode & 0o7777) != mode:
            os.chmod(path, mode)
        return False
    makedirs(os.path.dirname(path), dir_mode)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def write_in_place(path, text):
    """Rewrite a file keeping its inode (Docker bind-mounts /etc/resolv.conf)."""
    if read_text(path) == text:
        return False
    with open(path, "w") as handle:
        handle.write(text)
    return True


def load_json(path, default=None):
    text = read_text(path)
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def dump_json(value):
    return json.dumps(value, sort_keys=True, indent=1, separators=(",", ": ")) + "\n"
