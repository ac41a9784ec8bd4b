"""Small file helpers that never follow a link another user could have planted.

The agent runs as root and writes into directories other users own (``~disco``,
``~disco/.ssh``, Disco's ``/usr/var/disco``). Every path is walked one
component at a time with directory descriptors: a symlink is followed only
when the directory that holds it is trusted (owned by root or by us, not
writable by group or others); anywhere else a link is refused. Files are
created under an unpredictable name with ``O_CREAT|O_EXCL|O_NOFOLLOW`` in the
verified directory, get their mode and owner on the open descriptor
(``fchmod``/``fchown``) and are renamed into place inside that same directory.
Existing files are read with ``O_NOFOLLOW`` and only when they are regular
files with a single link.
"""

import binascii
import errno
import json
import logging
import os
import stat

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIR_FLAGS = os.O_RDONLY | O_DIRECTORY | O_CLOEXEC
# Every read is capped (size from fstat first, then counted): a file another user planted
# (an 8 GiB sparse known_hosts) is refused with a log line, never read into memory.
# Nothing the agent reads comes near it (specs < 8 KiB, known_hosts of 64 nodes ~ 10 KiB).
MAX_READ = 1 << 20
LOG = logging.getLogger("imagebake_agent")


class UnsafePath(OSError):
    """A path crosses a link or a directory another user controls."""

    def __init__(self, path, why):
        OSError.__init__(self, errno.EPERM, "refusing %s: %s" % (path, why))


class FileTooLarge(OSError):
    """A file over MAX_READ: refused, not read."""

    def __init__(self, path, size):
        OSError.__init__(self, errno.EFBIG, "refusing to read %s: %d bytes, over the %d "
                         "byte cap" % (path, size, MAX_READ))


def trusted_dir(st):
    """A directory only root (or we) can change: links in it may be followed."""
    return (st.st_uid in (0, os.geteuid())
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def open_dir(path, create_mode=None, private=False):
    """An O_DIRECTORY descriptor for path, walked without following untrusted links.

    create_mode: make missing components with this mode (else ENOENT).
    private: the last directory must be ours; group/other bits are removed from it,
    and one owned by another user is refused.
    """
    path = os.path.abspath(path)
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", _DIR_FLAGS)
    try:
        walked = ""
        for i, name in enumerate(parts):
            walked += "/" + name
            parent_ok = trusted_dir(os.fstat(fd))
            flags = _DIR_FLAGS | (0 if parent_ok else O_NOFOLLOW)
            try:
                child = os.open(name, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOENT and create_mode is not None:
                    try:
                        os.mkdir(name, create_mode, dir_fd=fd)
                    except OSError as mk:
                        if mk.errno != errno.EEXIST:
                            raise
                    child = os.open(name, _DIR_FLAGS | O_NOFOLLOW, dir_fd=fd)
                elif exc.errno in (errno.ELOOP, errno.ENOTDIR) and not parent_ok:
                    raise UnsafePath(walked, "a link or non-directory in %s, which another "
                                     "user can write" % (os.path.dirname(walked) or "/")) from None
                else:
                    raise
            os.close(fd)
            fd = child
            if i == len(parts) - 1 and private:
                st = os.fstat(fd)
                if st.st_uid not in (0, os.geteuid()):
                    raise UnsafePath(walked, "owned by uid %d, not by us" % st.st_uid)
                if stat.S_IMODE(st.st_mode) & 0o077:
                    os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_existing(dir_fd, name):
    """(fd, stat) of a regular, single-link file name in dir_fd; None if absent or odd.

    A symlink, a FIFO, a device or a hard link is treated as "not our file".
    """
    try:
        fd = os.open(name, os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO, errno.EACCES):
            return None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        return None
    return fd, st


def _read_fd(fd, path):
    """The whole file, at most MAX_READ bytes (FileTooLarge, logged, beyond): the size
    is taken from fstat before reading and the bytes counted while reading (a file that
    grows meanwhile is refused too)."""
    size = os.fstat(fd).st_size
    total = 0
    chunks = []
    while size <= MAX_READ:
        chunk = os.read(fd, min(1 << 16, MAX_READ + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        chunks.append(chunk)
        size = max(size, total)
    exc = FileTooLarge(path, size)
    LOG.warning("%s", exc.strerror)
    raise exc


def _open_parent(path):
    """open_dir() of path's directory; None when that directory is missing."""
    try:
        return open_dir(os.path.dirname(os.path.abspath(path)))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def read_bytes(path, default=None):
    """A regular file's bytes, never through an untrusted link; default when absent."""
    dfd = _open_parent(path)
    if dfd is None:
        return default
    try:
        name = os.path.basename(path)
        parent_ok = trusted_dir(os.fstat(dfd))
        if parent_ok:
            try:
                fd = os.open(name, os.O_RDONLY | O_NONBLOCK | O_CLOEXEC, dir_fd=dfd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    return default
                raise
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return default
        else:
            found = _open_existing(dfd, name)
            if found is None:
                return default
            fd = found[0]
        try:
            return _read_fd(fd, path)
        finally:
            os.close(fd)
    finally:
        os.close(dfd)


def read_text(path, default=None):
    data = read_bytes(path)
    return default if data is None else data.decode("utf-8")


def makedirs(path, mode=0o755, private=False):
    os.close(open_dir(path, create_mode=mode, private=private))


def write_atomic(path, text, mode=0o644, dir_mode=0o755, owner=None):
    """Write text to path (tmp + rename in the same verified directory) when it differs.

    Returns True when the file was (re)written. Mode (and owner, a (uid, gid)
    pair) are applied on the descriptor either way. dir_mode 0o700 makes the
    directory private (tightened if it is ours and loose, refused if not ours).
    """
    data = text.encode("utf-8") if not isinstance(text, bytes) else text
    path = os.path.abspath(path)
    name = os.path.basename(path)
    dfd = open_dir(os.path.dirname(path), create_mode=dir_mode,
                   private=not dir_mode & 0o077)
    try:
        found = _open_existing(dfd, name)
        if found is not None:
            fd, st = found
            try:
                try:
                    same = _read_fd(fd, path) == data
                except FileTooLarge:
                    LOG.warning("%s: not read, replaced", path)
                    same = False
                if same:
                    if stat.S_IMODE(st.st_mode) != mode:
                        os.fchmod(fd, mode)
                    if owner is not None and (st.st_uid, st.st_gid) != tuple(owner):
                        os.fchown(fd, owner[0], owner[1])
                    return False
            finally:
                os.close(fd)
        tmp = None
        for _ in range(16):
            candidate = ".%s.%s.tmp" % (name, binascii.hexlify(os.urandom(8)).decode("ascii"))
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW
                             | O_CLOEXEC, 0o600, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.EEXIST:
                    continue
                raise
            tmp = candidate
            break
        if tmp is None:
            raise UnsafePath(path, "no free temporary name")
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if owner is not None:
                    os.fchown(fd, owner[0], owner[1])
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
        return True
    finally:
        os.close(dfd)


def write_in_place(path, text):
    """Rewrite a file keeping its inode (Docker bind-mounts /etc/resolv.conf).

    Only for root's own files (/etc/resolv.conf, /etc/hostname): the directory
    must be trusted and the file itself no link.
    """
    data = text.encode("utf-8")
    dfd = open_dir(os.path.dirname(os.path.abspath(path)))
    try:
        if not trusted_dir(os.fstat(dfd)):
            raise UnsafePath(path, "in a directory another user can write")
        fd = os.open(os.path.basename(path), os.O_RDWR | O_NOFOLLOW | O_CLOEXEC, dir_fd=dfd)
        try:
            if _read_fd(fd, path) == data:
                return False
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            return True
        finally:
            os.close(fd)
    finally:
        os.close(dfd)


def ensure_file(path, mode, owner=None):
    """Set mode/owner of an existing regular file on its descriptor; False if absent.

    Raise UnsafePath when the name is a link or not a single-link regular file.
    """
    dfd = _open_parent(path)
    if dfd is None:
        return False
    try:
        name = os.path.basename(path)
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        found = _open_existing(dfd, name)
        if found is None:
            raise UnsafePath(path, "not a regular file with one link (mode %o)" % st.st_mode)
        fd, st = found
        try:
            if stat.S_IMODE(st.st_mode) != mode:
                os.fchmod(fd, mode)
            if owner is not None and (st.st_uid, st.st_gid) != tuple(owner):
                os.fchown(fd, owner[0], owner[1])
        finally:
            os.close(fd)
        return True
    finally:
        os.close(dfd)


def lexists(path):
    try:
        os.lstat(path)
        return True
    except OSError:
        return False


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
