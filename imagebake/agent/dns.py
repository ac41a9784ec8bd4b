"""Name resolution: the master's dnsmasq hosts file and every machine's resolver.

The master runs dnsmasq with addn-hosts=/etc/imagebake/hosts and
resolv-file=/etc/imagebake/resolv.upstream (see docs/agent.md); its own
resolver points at 127.0.0.1, the nodes' resolvers point at the master.
"""

import os

from .fsutil import read_text, write_atomic, write_in_place

HOSTS_FILE = "/etc/imagebake/hosts"
UPSTREAM_FILE = "/etc/imagebake/resolv.upstream"
RESOLV_CONF = "/etc/resolv.conf"
RESOLVCONF_DIR = "/etc/resolvconf/resolv.conf.d"
MARK = "# written by imagebake-agent"


def render_hosts(entries):
    """entries: [(name, address)] -> 'address name' lines, stable order."""
    lines = [MARK]
    for name, address in entries:
        lines.append("%s %s" % (address, name))
    return "\n".join(lines) + "\n"


def write_hosts(ctx, entries):
    return write_atomic(ctx.path(HOSTS_FILE), render_hosts(entries), mode=0o644)


def render_resolver(existing, nameserver):
    """Keep search/domain/options lines as they are; one nameserver line."""
    keep = []
    for line in (existing or "").splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("search", "domain", "options"):
            keep.append(line)
    return "\n".join([MARK, "nameserver %s" % nameserver] + keep) + "\n"


SELF_ADDRESSES = ("127.0.0.1", "::1", "0.0.0.0")


def nameservers(text):
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            out.append(parts[1])
    return out


def save_upstream(ctx):
    """Before pointing the master at 127.0.0.1, keep the original upstreams for dnsmasq."""
    path = ctx.path(UPSTREAM_FILE)
    current = nameservers(read_text(ctx.path(RESOLV_CONF)))
    # Only the addresses dnsmasq itself answers on would loop; other loopback
    # resolvers are real upstreams (Docker's 127.0.0.11, systemd's 127.0.0.53).
    upstream = [ns for ns in current if ns not in SELF_ADDRESSES]
    if not upstream or os.path.exists(path):
        return False
    text = "".join("nameserver %s\n" % ns for ns in upstream)
    return write_atomic(path, text, mode=0o644)


def point_resolver(ctx, nameserver):
    """Use nameserver; resolvconf layout (Ubuntu 14.04) or /etc/resolv.conf in place.

    Returns (changed, how).
    """
    resolvconf_dir = ctx.path(RESOLVCONF_DIR)
    if os.path.isdir(resolvconf_dir):
        head = os.path.join(resolvconf_dir, "head")
        changed = write_atomic(head, render_resolver(read_text(head), nameserver), mode=0o644)
        if changed:
            result = ctx.runner.run(["resolvconf", "-u"])
            if not result.ok:
                return changed, "resolvconf -u failed: %s" % result.out.strip()
        return changed, "resolvconf head"
    path = ctx.path(RESOLV_CONF)
    text = render_resolver(read_text(path), nameserver)
    if os.path.islink(path):
        # a symlink into a resolver daemon's run dir: replace the link by a file
        os.unlink(path)
        return write_atomic(path, text, mode=0o644), "resolv.conf (was a symlink)"
    if os.path.exists(path):
        return write_in_place(path, text), "resolv.conf in place"
    return write_atomic(path, text, mode=0o644), "resolv.conf"
