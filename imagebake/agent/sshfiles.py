"""known_hosts and authorized_keys: a managed block, unrelated lines kept.

The agent owns the lines between BEGIN and END; every other line is kept as it
was, except exact copies of managed lines (no duplicates). Rendering twice
gives the same bytes.
"""

import os

from .fsutil import FileTooLarge, read_text, write_atomic
from .keys import disco_ssh_dir
from .protocol import key_only

BEGIN = "# BEGIN imagebake (managed by the agent; edits inside are lost)"
END = "# END imagebake"


def merge_block(existing, managed_lines):
    """Return existing text with the managed block replaced by managed_lines."""
    managed = [line for line in managed_lines if line]
    keep = []
    inside = False
    for line in (existing or "").splitlines():
        if line == BEGIN:
            inside = True
            continue
        if line == END:
            inside = False
            continue
        if inside or line in managed:
            continue
        keep.append(line)
    while keep and not keep[-1].strip():
        keep.pop()
    out = keep + [BEGIN] + managed + [END]
    return "\n".join(out) + "\n"


def known_hosts_line(names, pubkey):
    """'name,address,... ssh-ed25519 KEY' (pinned, comment dropped)."""
    return "%s %s" % (",".join(names), key_only(pubkey))


# What Disco's slave:start (`ssh HOST erl ...`) needs, and nothing more. OpenSSH
# 6.6 (Ubuntu 14.04) has no `restrict`, so the options are spelled out.
KEY_OPTIONS = ("no-port-forwarding", "no-agent-forwarding", "no-X11-forwarding", "no-pty")


def restricted_key(pubkey, from_addresses):
    """'from="a,b",no-port-forwarding,... ssh-ed25519 KEY comment' for authorized_keys."""
    options = ['from="%s"' % ",".join(from_addresses)] + list(KEY_OPTIONS)
    return "%s %s" % (",".join(options), pubkey)


def write_ssh_file(ctx, name, managed_lines, mode=0o600):
    """Merge our block into disco's file. One over the read cap (planted by a job running
    as disco) is not read: it is rewritten with the managed block alone."""
    path = os.path.join(disco_ssh_dir(ctx), name)
    try:
        existing = read_text(path)
    except FileTooLarge:
        ctx.log.warning("%s: not read, rewritten with the managed block only", path)
        existing = None
    text = merge_block(existing, managed_lines)
    return write_atomic(path, text, mode=mode, owner=ctx.disco_owner(path))


def write_known_hosts(ctx, lines):
    return write_ssh_file(ctx, "known_hosts", lines, mode=0o644)


def write_authorized_keys(ctx, lines):
    return write_ssh_file(ctx, "authorized_keys", lines, mode=0o600)
