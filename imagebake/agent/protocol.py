"""The signed join protocol between nodes and the master.

Every message travels as {"msg": {...}, "mac": hex} where
mac = HMAC-SHA256(key = the 32 token bytes (hex-decoded spec token),
                  data = canonical JSON of msg).
Canonical JSON: sort_keys, separators (",", ":"), ensure_ascii.
"""

import binascii
import hashlib
import heapq
import hmac
import json
import os
import re
import threading

from .spec import is_ipv4, is_short_hostname

SKEW = 120  # seconds a message's ts may differ from the receiver's clock
MAX_BODY = 64 * 1024
_PUBKEY = re.compile(r"ssh-ed25519 [A-Za-z0-9+/=]+( [ -~]*)?")  # fullmatch; printable ASCII
_NONCE = re.compile(r"[0-9a-f]{32}")  # fullmatch
# What seal() produces, byte for byte: the MAC is checked over the raw msg bytes
# before any JSON is parsed (a deeply nested body never reaches the parser).
_MAC_FIRST = re.compile(br'\{\s*"mac"\s*:\s*"([0-9a-f]{64})"\s*,\s*"msg"\s*:\s*(\{.*\})\s*\}',
                        re.S)
_MSG_FIRST = re.compile(br'\{\s*"msg"\s*:\s*(\{.*\})\s*,\s*"mac"\s*:\s*"([0-9a-f]{64})"\s*\}',
                        re.S)


def _split_sealed(body):
    """(mac, raw msg bytes) of {"mac": .., "msg": {..}} in either order, or None."""
    found = _MAC_FIRST.fullmatch(body)
    if found is not None:
        return found.group(1), found.group(2)
    found = _MSG_FIRST.fullmatch(body)
    if found is not None:
        return found.group(2), found.group(1)
    return None
MAX_ADDRESSES = 16


class ProtocolError(ValueError):
    """A message failed verification; str() is the terse reason sent back."""


def canonical(msg):
    return json.dumps(msg, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")


def key_bytes(token):
    return binascii.unhexlify(token.encode("ascii"))


def mac(token, msg):
    return hmac.new(key_bytes(token), canonical(msg), hashlib.sha256).hexdigest()


def seal(token, msg):
    """The wire body (bytes) of a signed message."""
    return json.dumps({"msg": msg, "mac": mac(token, msg)}, sort_keys=True,
                      separators=(",", ":")).encode("ascii")


def new_nonce():
    return binascii.hexlify(os.urandom(16)).decode("ascii")


def is_pubkey(text):
    return (isinstance(text, str) and "\n" not in text and "\r" not in text
            and len(text) < 1024 and bool(_PUBKEY.fullmatch(text)))


def key_only(pubkey):
    """'ssh-ed25519 AAAA' without the comment."""
    return " ".join(pubkey.split(" ")[:2])


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class ReplayCache(object):
    """Nonces of verified messages, evicted by age; bounded, thread-safe.

    Keyed by the message's own ts: an entry older than the skew window can go,
    since a replay of it fails the ts check anyway. When full, the oldest entry
    is evicted and its ts becomes the floor: nothing at or below it is accepted
    again, so eviction never opens a replay and fresh messages are never locked
    out. not_before (the agent's start) refuses messages from before this
    process existed: a capture replayed after a restart.
    """

    def __init__(self, window=SKEW + 10, limit=65536, not_before=None):
        self.window = window
        self.limit = limit
        self.not_before = not_before
        self.floor = None
        self._seen = {}
        self._heap = []
        self._lock = threading.Lock()

    def check_and_add(self, nonce, ts, now=None):
        now = ts if now is None else now
        with self._lock:
            if self.not_before is not None and ts < self.not_before:
                raise ProtocolError("message is older than this agent's start")
            if self.floor is not None and ts <= self.floor:
                raise ProtocolError("message is older than the replay cache")
            cutoff = now - self.window
            while self._heap and self._heap[0][0] < cutoff:
                old_ts, old = heapq.heappop(self._heap)
                self._seen.pop(old, None)
            if nonce in self._seen:
                raise ProtocolError("replayed nonce")
            while len(self._seen) >= self.limit:
                old_ts, old = heapq.heappop(self._heap)
                self._seen.pop(old, None)
                self.floor = old_ts if self.floor is None else max(self.floor, old_ts)
            if self.floor is not None and ts <= self.floor:
                raise ProtocolError("message is older than the replay cache")
            self._seen[nonce] = ts
            heapq.heappush(self._heap, (ts, nonce))

    def __len__(self):
        return len(self._seen)


def open_envelope(token, body, cluster, now, expect_type, replay=None):
    """Verify a signed body, then parse it; return msg. Raise ProtocolError.

    Order matters: the MAC is checked over the raw bytes of msg before any JSON
    is parsed or anything in msg is trusted; msg must be the canonical JSON the
    MAC was made over, so a re-encoded msg is refused ("bad mac").
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    if len(body) > MAX_BODY:
        raise ProtocolError("body too large")
    sealed = _split_sealed(body)
    if sealed is None:
        raise ProtocolError("body must be {msg, mac}")
    given, raw = sealed  # the MAC covers these exact bytes (canonical JSON of msg)
    expected = hmac.new(key_bytes(token), raw, hashlib.sha256).hexdigest().encode("ascii")
    if not hmac.compare_digest(expected, given):
        raise ProtocolError("bad mac")
    try:
        msg = json.loads(raw.decode("ascii"))
    except (ValueError, UnicodeDecodeError, RuntimeError):  # RecursionError < RuntimeError
        raise ProtocolError("msg is not JSON") from None
    if not isinstance(msg, dict) or canonical(msg) != raw:
        raise ProtocolError("msg is not canonical JSON")
    if msg.get("type") != expect_type:
        raise ProtocolError("wrong message type")
    if msg.get("cluster") != cluster:
        raise ProtocolError("wrong cluster")
    ts = msg.get("ts")
    if not _int(ts) or abs(now - ts) > SKEW:
        raise ProtocolError("timestamp outside the %d s window" % SKEW)
    nonce = msg.get("nonce")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise ProtocolError("bad nonce")
    if replay is not None:
        replay.check_and_add(nonce, ts, now)
    return msg


# -- join ---------------------------------------------------------------------

def make_join(cluster, now, hostname, addresses, cores, disco_pubkey, host_pubkey,
              trusted=True):
    """TRUSTED: the node has written the master's keys and resolver from a welcome, so
    Disco may start its Erlang node over ssh now (a first join says false)."""
    return {"type": "join", "cluster": cluster, "nonce": new_nonce(), "ts": int(now),
            "hostname": hostname, "addresses": list(addresses), "cores": int(cores),
            "disco_pubkey": disco_pubkey, "host_pubkey": host_pubkey,
            "trusted": bool(trusted)}


JOIN_FIELDS = frozenset(("type", "cluster", "nonce", "ts", "hostname", "addresses", "cores",
                         "disco_pubkey", "host_pubkey"))


def check_join_fields(msg):
    """Well-formedness of a verified join; raise ProtocolError. `trusted` (a boolean) may
    be left out by an agent from before it: such a join counts as trusted."""
    fields = set(msg)
    fields.discard("trusted")
    if fields != JOIN_FIELDS:
        raise ProtocolError("join fields must be exactly: %s (and trusted)"
                            % ",".join(sorted(JOIN_FIELDS)))
    if not isinstance(msg.get("trusted", True), bool):
        raise ProtocolError("trusted must be true or false")
    hostname = msg["hostname"]
    if not is_short_hostname(hostname) or hostname != hostname.lower():
        raise ProtocolError("hostname must be a short lowercase host name")
    addresses = msg["addresses"]
    if (not isinstance(addresses, list) or not addresses or len(addresses) > MAX_ADDRESSES
            or not all(is_ipv4(a) for a in addresses)):
        raise ProtocolError("addresses must be a non-empty list of IPv4 addresses")
    if not _int(msg["cores"]) or not 1 <= msg["cores"] <= 4096:
        raise ProtocolError("cores must be an integer 1-4096")
    for field in ("disco_pubkey", "host_pubkey"):
        if not is_pubkey(msg[field]):
            raise ProtocolError("%s must be one ssh-ed25519 public key line" % field)
    return msg


# -- welcome (the master's signed reply) ---------------------------------------

def make_welcome(cluster, now, in_reply_to, master_hostname, master_addresses,
                 disco_pubkey, host_pubkey, hosts, ttl_deadline=None, stop=None):
    """The master's signed answer to a join (also every 30 s heartbeat): besides the
    master's identity it carries the TTL deadline in force (nodes follow a moved one)
    and, once the master has decided the cluster stops (idle stop), the stop order."""
    msg = {"type": "welcome", "cluster": cluster, "nonce": new_nonce(), "ts": int(now),
           "in_reply_to": in_reply_to, "master_hostname": master_hostname,
           "master_addresses": list(master_addresses), "disco_pubkey": disco_pubkey,
           "host_pubkey": host_pubkey, "hosts": [list(h) for h in hosts],
           "ttl_deadline": ttl_deadline}
    if stop:
        msg["stop"] = stop
    return msg


def is_unicast(address, allow_loopback=False):
    """An IPv4 address a cluster member may have: not 0/8, loopback (unless allowed),
    link-local (169.254/16, the metadata service), multicast or broadcast."""
    if not is_ipv4(address):
        return False
    first, second = [int(p) for p in address.split(".")[:2]]
    if first == 127:
        return allow_loopback
    return not (first == 0 or first >= 224 or (first, second) == (169, 254))


def check_welcome_fields(msg, request_nonce, allow_loopback=False):
    if msg.get("in_reply_to") != request_nonce:
        raise ProtocolError("reply is not for our request")
    if not is_short_hostname(msg.get("master_hostname")):
        raise ProtocolError("bad master_hostname")
    addresses = msg.get("master_addresses")
    if (not isinstance(addresses, list) or not addresses
            or not all(is_unicast(a, allow_loopback) for a in addresses)):
        raise ProtocolError("bad master_addresses (loopback, link-local or empty)")
    for field in ("disco_pubkey", "host_pubkey"):
        if not is_pubkey(msg.get(field)):
            raise ProtocolError("bad %s" % field)
    hosts = msg.get("hosts")
    if not isinstance(hosts, list) or not all(
            isinstance(h, list) and len(h) == 2 and is_short_hostname(h[0]) and is_ipv4(h[1])
            for h in hosts):
        raise ProtocolError("bad hosts")
    deadline = msg.get("ttl_deadline")  # absent from a master baked before it existed
    if deadline is not None and (not _int(deadline) or deadline <= 0):
        raise ProtocolError("bad ttl_deadline")
    if "stop" in msg and not is_reason(msg["stop"]):
        raise ProtocolError("bad stop order")
    return msg


def is_reason(text):
    """A stop order's reason: one short printable ASCII line."""
    return (isinstance(text, str) and 0 < len(text) <= 200
            and all(32 <= ord(c) < 127 for c in text))


# -- status (launcher -> master) -------------------------------------------------

def make_status_request(cluster, now):
    return {"type": "status", "cluster": cluster, "nonce": new_nonce(), "ts": int(now)}


def make_extend_request(cluster, now, ttl_seconds):
    """Launcher -> master: the TTL deadline becomes now + ttl_seconds (the master's now:
    the laptop's clock does not matter)."""
    return {"type": "extend", "cluster": cluster, "nonce": new_nonce(), "ts": int(now),
            "ttl_seconds": int(ttl_seconds)}


MAX_EXTEND = 30 * 24 * 3600


def check_extend_fields(msg):
    expected = {"type", "cluster", "nonce", "ts", "ttl_seconds"}
    if set(msg) != expected:
        raise ProtocolError("extend fields must be exactly: %s" % ",".join(sorted(expected)))
    seconds = msg["ttl_seconds"]
    if not _int(seconds) or not 0 < seconds <= MAX_EXTEND:
        raise ProtocolError("ttl_seconds must be an integer 1-%d" % MAX_EXTEND)
    return msg


def make_extend_reply(cluster, now, in_reply_to, ttl_deadline, previous, armed):
    return {"type": "extend_reply", "cluster": cluster, "nonce": new_nonce(), "ts": int(now),
            "in_reply_to": in_reply_to, "ttl_deadline": ttl_deadline, "previous": previous,
            "armed": armed}


def make_status_reply(cluster, now, in_reply_to, summary):
    msg = {"type": "status_reply", "cluster": cluster, "nonce": new_nonce(),
           "ts": int(now), "in_reply_to": in_reply_to}
    msg.update(summary)
    return msg


# -- leave (launcher -> master): shrink removes nodes ------------------------------

MAX_LEAVE = 64


def make_leave_request(cluster, now, hostnames):
    """Launcher -> master: forget these nodes (membership, Disco's hosts table, dnsmasq
    hosts, known_hosts); a join from one of them with the same host key is refused after."""
    return {"type": "leave", "cluster": cluster, "nonce": new_nonce(), "ts": int(now),
            "hostnames": sorted(set(hostnames))}


def check_leave_fields(msg):
    expected = {"type", "cluster", "nonce", "ts", "hostnames"}
    if set(msg) != expected:
        raise ProtocolError("leave fields must be exactly: %s" % ",".join(sorted(expected)))
    names = msg["hostnames"]
    if (not isinstance(names, list) or not 0 < len(names) <= MAX_LEAVE
            or not all(is_short_hostname(n) for n in names) or len(set(names)) != len(names)):
        raise ProtocolError("hostnames must be 1-%d distinct short host names" % MAX_LEAVE)
    return msg


def make_leave_reply(cluster, now, in_reply_to, removed, unknown, hosts):
    return {"type": "leave_reply", "cluster": cluster, "nonce": new_nonce(), "ts": int(now),
            "in_reply_to": in_reply_to, "removed": removed, "unknown": unknown,
            "hosts": [list(h) for h in hosts]}


# -- notice (node -> master): a spot interruption notice from the node's IMDS -----------

NOTICE_KINDS = ("instance-action", "rebalance")


def make_notice(cluster, now, hostname, kind, action, when):
    """Node -> master: EC2 said this machine will be taken back (or is at risk)."""
    return {"type": "notice", "cluster": cluster, "nonce": new_nonce(), "ts": int(now),
            "hostname": hostname, "kind": kind, "action": action, "time": when}


def check_notice_fields(msg):
    expected = {"type", "cluster", "nonce", "ts", "hostname", "kind", "action", "time"}
    if set(msg) != expected:
        raise ProtocolError("notice fields must be exactly: %s" % ",".join(sorted(expected)))
    if not is_short_hostname(msg["hostname"]) or msg["hostname"] != msg["hostname"].lower():
        raise ProtocolError("hostname must be a short lowercase host name")
    if msg["kind"] not in NOTICE_KINDS:
        raise ProtocolError("kind must be one of %s" % ", ".join(NOTICE_KINDS))
    if not is_reason(msg["action"]):
        raise ProtocolError("action must be one short printable line")
    if not (msg["time"] == "" or is_reason(msg["time"])):
        raise ProtocolError("time must be one short printable line")
    return msg


def make_notice_reply(cluster, now, in_reply_to, outcome):
    return {"type": "notice_reply", "cluster": cluster, "nonce": new_nonce(), "ts": int(now),
            "in_reply_to": in_reply_to, "outcome": outcome}
