"""SSH keys: the ed25519 host key and the disco user's key pair (never regenerated)."""

import os

from .context import DISCO_USER
from .fsutil import makedirs, read_text, write_atomic
from .protocol import is_pubkey

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"


class KeyError_(RuntimeError):
    pass


def _keygen(ctx, path, comment):
    makedirs(os.path.dirname(path), 0o755)
    result = ctx.runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                             "-f", path])
    if not result.ok:
        raise KeyError_("ssh-keygen for %s failed: %s" % (path, result.out.strip()))


def _read_pub(path):
    text = read_text(path + ".pub")
    line = (text or "").strip()
    if not is_pubkey(line):
        raise KeyError_("%s.pub is missing or not an ssh-ed25519 key" % path)
    return line


def ensure_host_key(ctx):
    """Make /etc/ssh/ssh_host_ed25519_key if missing; return the public key line."""
    path = ctx.path(HOST_KEY)
    made = False
    if not os.path.exists(path):
        _keygen(ctx, path, "")
        made = True
    os.chmod(path, 0o600)
    return _read_pub(path), made


def disco_ssh_dir(ctx):
    path = ctx.disco_path(".ssh")
    makedirs(path, 0o700)
    os.chmod(path, 0o700)
    ctx.runner.chown(path, DISCO_USER)
    return path


def ensure_disco_key(ctx, hostname):
    """Make ~disco/.ssh/id_ed25519 if missing; return the public key line."""
    ssh_dir = disco_ssh_dir(ctx)
    path = os.path.join(ssh_dir, "id_ed25519")
    made = False
    if not os.path.exists(path):
        _keygen(ctx, path, "%s@%s" % (DISCO_USER, hostname))
        made = True
    os.chmod(path, 0o600)
    for item in (path, path + ".pub"):
        ctx.runner.chown(item, DISCO_USER)
    return _read_pub(path), made


def write_erlang_cookie(ctx, cookie):
    """~disco/.erlang.cookie, mode 0400, owned by disco."""
    home = ctx.disco_home()
    makedirs(home, 0o755)
    path = os.path.join(home, ".erlang.cookie")
    changed = write_atomic(path, cookie, mode=0o400)
    ctx.runner.chown(path, DISCO_USER)
    return changed
