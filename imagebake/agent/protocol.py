"""The signed join protocol between nodes and the master.

Every message travels as {"msg": {...}, "mac": hex} where
mac = HMAC-SHA256(key = the 32 token bytes (hex-decoded spec token),
                  data = canonical JSON of msg).
Canonical JSON: sort_keys, separators (",", ":"), ensure_ascii.
"""

import binascii
import hashlib
import hmac
import json
import os
import re
import threading

from .spec import is_ipv4, is_short_hostname

SKEW = 120  # seconds a message's ts may differ from the receiver's clock
MAX_BODY = 64 * 1024
_PUBKEY = re.compile(r"^ssh-ed25519 [A-Za-z0-9+/=]+( [^\r\n]*)?$")
_NONCE = re.compile(r"^[0-9a-f]{32}$")
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
            and len(text) < 1024 and bool(_PUBKEY.match(text)))


def key_only(pubkey):
    """'ssh-ed25519 AAAA' without the comment."""
    return " ".join(pubkey.split(" ")[:2])


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class ReplayCache(object):
    """Nonces seen within the skew window; bounded, thread-safe."""

    def __init__(self, window=2 * SKEW + 10, limit=65536):
        self.window = window
        self.limit = limit
        self._seen = {}
        self._lock = threading.Lock()

    def check_and_add(self, nonce, now):
        with self._lock:
            if nonce in self._seen:
                raise ProtocolError("replayed nonce")
            if len(self._seen) >= self.limit:
                cutoff = now - self.window
                for old in [n for n, t in self._seen.items() if t < cutoff]:
                    del self._seen[old]
                if len(self._seen) >= self.limit:
                    raise ProtocolError("replay cache full, retry later")
            self._seen[nonce] = now

    def __len__(self):
        return len(self._seen)


def open_envelope(token, body, cluster, now, expect_type, replay=None):
    """Parse + verify a signed body; return msg. Raise ProtocolError.

    Order matters: the MAC is checked before anything in msg is trusted.
    """
    if len(body) > MAX_BODY:
        raise ProtocolError("body too large")
    try:
        envelope = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("body is not JSON") from None
    if not isinstance(envelope, dict) or set(envelope) != {"msg", "mac"}:
        raise ProtocolError("body must be {msg, mac}")
    msg, given = envelope["msg"], envelope["mac"]
    if not isinstance(msg, dict) or not isinstance(given, str):
        raise ProtocolError("body must be {msg, mac}")
    expected = mac(token, msg)
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace")):
        raise ProtocolError("bad mac")
    if msg.get("type") != expect_type:
        raise ProtocolError("wrong message type")
    if msg.get("cluster") != cluster:
        raise ProtocolError("wrong cluster")
    ts = msg.get("ts")
    if not _int(ts) or abs(now - ts) > SKEW:
        raise ProtocolError("timestamp outside the %d s window" % SKEW)
    nonce = msg.get("nonce")
    if not isinstance(nonce, str) or not _NONCE.match(nonce):
        raise ProtocolError("bad nonce")
    if replay is not None:
        replay.check_and_add(nonce, now)
    return msg


# -- join ---------------------------------------------------------------------

def make_join(cluster, now, hostname, addresses, cores, disco_pubkey, host_pubkey):
    return {"type": "join", "cluster": cluster, "nonce": new_nonce(), "ts": int(now),
            "hostname": hostname, "addresses": list(addresses), "cores": int(cores),
            "disco_pubkey": disco_pubkey, "host_pubkey": host_pubkey}


def check_join_fields(msg):
    """Well-formedness of a verified join; raise ProtocolError."""
    expected = {"type", "cluster", "nonce", "ts", "hostname", "addresses", "cores",
                "disco_pubkey", "host_pubkey"}
    if set(msg) != expected:
        raise ProtocolError("join fields must be exactly: %s" % ",".join(sorted(expected)))
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
                 disco_pubkey, host_pubkey, hosts):
    return {"type": "welcome", "cluster": cluster, "nonce": new_nonce(), "ts": int(now),
            "in_reply_to": in_reply_to, "master_hostname": master_hostname,
            "master_addresses": list(master_addresses), "disco_pubkey": disco_pubkey,
            "host_pubkey": host_pubkey, "hosts": [list(h) for h in hosts]}


def check_welcome_fields(msg, request_nonce):
    if msg.get("in_reply_to") != request_nonce:
        raise ProtocolError("reply is not for our request")
    if not is_short_hostname(msg.get("master_hostname")):
        raise ProtocolError("bad master_hostname")
    addresses = msg.get("master_addresses")
    if not isinstance(addresses, list) or not all(is_ipv4(a) for a in addresses):
        raise ProtocolError("bad master_addresses")
    for field in ("disco_pubkey", "host_pubkey"):
        if not is_pubkey(msg.get(field)):
            raise ProtocolError("bad %s" % field)
    hosts = msg.get("hosts")
    if not isinstance(hosts, list) or not all(
            isinstance(h, list) and len(h) == 2 and is_short_hostname(h[0]) and is_ipv4(h[1])
            for h in hosts):
        raise ProtocolError("bad hosts")
    return msg


# -- status (launcher -> master) -------------------------------------------------

def make_status_request(cluster, now):
    return {"type": "status", "cluster": cluster, "nonce": new_nonce(), "ts": int(now)}


def make_status_reply(cluster, now, in_reply_to, summary):
    msg = {"type": "status_reply", "cluster": cluster, "nonce": new_nonce(),
           "ts": int(now), "in_reply_to": in_reply_to}
    msg.update(summary)
    return msg
