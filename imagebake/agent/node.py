"""The node side: join the master (signed), verify the welcome, write trust + DNS."""

import errno
import http.client
import json
import random
import socket
from urllib.parse import urlsplit

from . import ttl
from .dns import point_resolver
from .protocol import (
    ProtocolError,
    check_welcome_fields,
    make_join,
    make_notice,
    open_envelope,
    seal,
)
from .spec import is_ipv4, join_port, master_name
from .sshfiles import (
    known_hosts_line,
    restricted_key,
    write_authorized_keys,
    write_known_hosts,
)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
HEARTBEAT = 30


class JoinError(RuntimeError):
    pass


def cpu_count():
    import os
    try:
        return os.cpu_count() or 1
    except AttributeError:  # pragma: no cover
        return 1


def local_addresses(master_address, port):
    """The IPv4 address this machine uses toward the master (UDP connect sends nothing)."""
    try:
        target = socket.gethostbyname(master_address)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.connect((target, port))
            address = sock.getsockname()[0]
        finally:
            sock.close()
        if is_ipv4(address) and address != "0.0.0.0":
            return [address]
    except (socket.error, UnicodeError):
        pass
    return ["127.0.0.1"]


class Identity(object):
    """What a node says about itself in a join."""

    def __init__(self, hostname, addresses, cores, disco_pubkey, host_pubkey):
        self.hostname = hostname
        self.addresses = list(addresses)
        self.cores = cores
        self.disco_pubkey = disco_pubkey
        self.host_pubkey = host_pubkey


def join_url(spec, address=None):
    return "http://%s:%d/v1/join" % (address or spec["master"]["address"], join_port(spec))


def _post(url, body, timeout, source=None):
    """POST body; (status, reply bytes). From source (our address) when it can bind."""
    parts = urlsplit(url)
    for bind in ([(source, 0)] if source else []) + [None]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout,
                                          source_address=bind)
        try:
            conn.request("POST", parts.path, body=body,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read(1024 * 1024)
        except OSError as exc:
            if bind is not None and getattr(exc, "errno", None) in (errno.EADDRNOTAVAIL,
                                                                  errno.EINVAL):
                continue
            raise
        finally:
            conn.close()
    raise JoinError("cannot reach the master")  # pragma: no cover


def join_once(ctx, spec, identity, timeout=5.0, url=None, trusted=True):
    """One signed join; return the verified welcome msg. Raise JoinError/ProtocolError.

    The join is sent from identity.addresses[0]: the master records only the
    address a join comes from. TRUSTED false (the first join of a boot): this node has
    not written the master's keys and resolver yet, so the master keeps it out of
    Disco's hosts table until a join says true (a heartbeat, or the one at the end of
    the boot).
    """
    msg = make_join(spec["cluster"], ctx.now(), identity.hostname, identity.addresses,
                    identity.cores, identity.disco_pubkey, identity.host_pubkey, trusted)
    body = _send_sealed(spec, url or join_url(spec), msg, identity, timeout)
    welcome = open_envelope(spec["token"], body, spec["cluster"], ctx.now(), "welcome")
    return check_welcome_fields(welcome, msg["nonce"],
                                allow_loopback=getattr(ctx, "allow_loopback", False))


def _send_sealed(spec, url, msg, identity, timeout):
    """POST MSG sealed with the node's token, from the address the master knows this node
    by; the answer's body when the master said 200, else JoinError in one line."""
    try:
        status, body = _post(url, seal(spec["token"], msg), timeout,
                             identity.addresses[0] if identity.addresses else None)
    except (OSError, socket.timeout, http.client.HTTPException) as exc:
        raise JoinError("master unreachable: %s" % exc) from None
    if status != 200:
        detail = body[:200].decode("utf-8", "replace").strip()
        raise JoinError("master answered HTTP %d: %s" % (status, detail))
    return body


def send_notice(ctx, spec, identity, seen, timeout=5.0):
    """One signed spot notice ({kind, action, time}) to the master, from the address it
    knows this node by; the master's verified answer (one short line)."""
    msg = make_notice(spec["cluster"], ctx.now(), identity.hostname, seen["kind"],
                      seen["action"], seen["time"])
    url = "http://%s:%d/v1/notice" % (spec["master"]["address"], join_port(spec))
    body = _send_sealed(spec, url, msg, identity, timeout)
    reply = open_envelope(spec["token"], body, spec["cluster"], ctx.now(), "notice_reply")
    if reply.get("in_reply_to") != msg["nonce"] or not isinstance(reply.get("outcome"), str):
        raise ProtocolError("notice reply does not answer our notice")
    return reply["outcome"]


def backoff_delays(base=BACKOFF_BASE, cap=BACKOFF_CAP, rng=None):
    """Capped exponential backoff with (equal) jitter: d/2 + U(0, d/2)."""
    rng = rng or random.Random()
    attempt = 0
    while True:
        delay = min(cap, base * (2 ** attempt))
        yield delay / 2.0 + rng.uniform(0, delay / 2.0)
        attempt = min(attempt + 1, 30)


def join_until_welcome(ctx, spec, identity, url=None, max_attempts=None, trusted=True):
    """Retry join_once with backoff until the master answers; honour the TTL."""
    attempts = 0
    for delay in backoff_delays():
        attempts += 1
        try:
            return join_once(ctx, spec, identity, url=url, trusted=trusted)
        except (JoinError, ProtocolError) as exc:
            ctx.log.info("join attempt %d: %s; retrying in %.1fs", attempts, exc, delay)
            if max_attempts is not None and attempts >= max_attempts:
                raise JoinError("gave up after %d attempts: %s" % (attempts, exc)) from None
        ttl.enforce(ctx, spec)
        ctx.sleep(delay)


def master_address_from(welcome, spec):
    addresses = welcome["master_addresses"]
    if addresses:
        return addresses[0]
    return spec["master"]["address"]


def write_trust(ctx, spec, welcome):
    """authorized_keys (the master's disco key) and known_hosts (the master's host key)."""
    changed = []
    # The master's key, only from the master's addresses, no forwarding, no pty.
    line = restricted_key(welcome["disco_pubkey"], welcome["master_addresses"])
    if write_authorized_keys(ctx, [line]):
        changed.append("authorized_keys")
    names = [welcome["master_hostname"]]
    if master_name(spec) not in names:
        names.append(master_name(spec))
    names += [a for a in welcome["master_addresses"] if a not in names]
    if write_known_hosts(ctx, [known_hosts_line(names, welcome["host_pubkey"])]):
        changed.append("known_hosts")
    return changed


def write_dns(ctx, spec, welcome):
    address = master_address_from(welcome, spec)
    if not is_ipv4(address):
        address = socket.gethostbyname(address)
    return point_resolver(ctx, address)


def welcome_digest(welcome):
    """The parts of a welcome that matter for the files a node writes."""
    keep = ("master_hostname", "master_addresses", "disco_pubkey", "host_pubkey")
    return json.dumps([welcome[k] for k in keep], sort_keys=True)
