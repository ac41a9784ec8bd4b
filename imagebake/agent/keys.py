"""SSH keys: the ed25519 host key and the disco user's key pair (never regenerated).

~disco and ~disco/.ssh belong to disco, so nothing there is trusted: the
directory is opened without following links, keys are made by ssh-keygen in a
root-only temporary directory and installed with fsutil.write_atomic (random
temp name, O_EXCL|O_NOFOLLOW, fchown/fchmod, rename in the same directory);
an existing key that is a link or not a plain file is refused, not chmod'ed.
"""

import errno
import os
import shutil
import stat
import tempfile

from .fsutil import (
    O_CLOEXEC,
    O_DIRECTORY,
    O_NOFOLLOW,
    UnsafePath,
    ensure_file,
    makedirs,
    open_dir,
    read_bytes,
    read_text,
    write_atomic,
)
from .protocol import is_pubkey

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"


class KeyError_(RuntimeError):
    pass


def _keygen(ctx, path, comment):
    result = ctx.runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                             "-f", path])
    if not result.ok:
        raise KeyError_("ssh-keygen for %s failed: %s" % (path, result.out.strip()))


def _check_pub(path, text):
    line = (text or "").strip()
    if not is_pubkey(line):
        raise KeyError_("%s.pub is missing or not an ssh-ed25519 key" % path)
    return line


def ensure_host_key(ctx):
    """Make /etc/ssh/ssh_host_ed25519_key if missing; return the public key line."""
    path = ctx.path(HOST_KEY)
    makedirs(os.path.dirname(path), 0o755)
    made = False
    if not os.path.lexists(path):
        _keygen(ctx, path, "")
        made = True
    if not ensure_file(path, 0o600):
        raise KeyError_("%s is missing" % path)
    return _check_pub(path, read_text(path + ".pub")), made


def disco_ssh_dir(ctx):
    """~disco/.ssh: made if missing, 0700 and disco's; a link there is refused."""
    home = ctx.disco_home()
    owner = ctx.disco_owner(home + "/.ssh")
    hfd = open_dir(home, create_mode=0o755)
    try:
        try:
            os.mkdir(".ssh", 0o700, dir_fd=hfd)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
        try:
            fd = os.open(".ssh", os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
                         dir_fd=hfd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(home + "/.ssh", "not a directory (a link?)") from None
            raise
        try:
            st = os.fstat(fd)
            if stat.S_IMODE(st.st_mode) != 0o700:
                os.fchmod(fd, 0o700)
            if owner is not None and (st.st_uid, st.st_gid) != owner:
                os.fchown(fd, owner[0], owner[1])
        finally:
            os.close(fd)
    finally:
        os.close(hfd)
    return os.path.join(home, ".ssh")


def ensure_disco_key(ctx, hostname):
    """Make ~disco/.ssh/id_ed25519 if missing; return the public key line."""
    ssh_dir = disco_ssh_dir(ctx)
    path = os.path.join(ssh_dir, "id_ed25519")
    owner = ctx.disco_owner(path)
    made = False
    if not os.path.lexists(path):
        workdir = tempfile.mkdtemp(prefix="imagebake-key.")  # root-only, random name
        try:
            tmp = os.path.join(workdir, "id_ed25519")
            _keygen(ctx, tmp, "%s@%s" % (ctx.disco_user, hostname))
            private, public = read_bytes(tmp), read_bytes(tmp + ".pub")
            _check_pub(tmp, public.decode("utf-8"))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        write_atomic(path + ".pub", public, mode=0o644, owner=owner)
        write_atomic(path, private, mode=0o600, owner=owner)
        made = True
    if not ensure_file(path, 0o600, owner):
        raise KeyError_("%s is missing" % path)
    line = _check_pub(path, read_text(path + ".pub"))
    ensure_file(path + ".pub", 0o644, owner)
    return line, made


def write_erlang_cookie(ctx, cookie):
    """~disco/.erlang.cookie, mode 0400, owned by disco."""
    path = os.path.join(ctx.disco_home(), ".erlang.cookie")
    return write_atomic(path, cookie, mode=0o400, owner=ctx.disco_owner(path))
