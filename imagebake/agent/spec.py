"""The cluster spec: what the launcher hands every machine (JSON, < 2 KiB).

The launcher builds it with make_spec() and ships it as EC2 user data or as a
root-only file; the agent reads it back with loads() (which validates).
"""

import binascii
import json
import os
import re

VERSION = 1
MAX_BYTES = 2048
COOKIE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

# Every pattern is used with fullmatch: "$" would also match before a final newline.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_HOSTLABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COOKIE = re.compile(r"[A-Z0-9]{32}")
_IPV4 = re.compile(r"(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\."
                   r"(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})")
_DNSNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")

FIELDS = ("version", "cluster", "role", "hostname", "master", "token", "cookie",
          "workers", "master_workers", "expected_nodes", "ttl_deadline",
          "disco_port", "erlang_ports", "idle_stop", "launcher_key")
# idle_stop is optional (left out when null): a spec without it stays readable by
# agents baked before it existed. launcher_key is in the master's spec only.
OPTIONAL = ("idle_stop", "launcher_key")


class SpecError(ValueError):
    """The spec is unusable; the message is one line."""


def new_token():
    """32 random bytes, hex (64 chars): an HMAC key (the join token, the launcher key)."""
    return binascii.hexlify(os.urandom(32)).decode("ascii")


def new_cookie():
    """32 chars [A-Z0-9]: the Erlang distribution cookie."""
    out = []
    while len(out) < 32:
        for byte in bytearray(os.urandom(64)):
            if byte < 252:  # 252 = 7 * 36: no modulo bias
                out.append(COOKIE_ALPHABET[byte % 36])
                if len(out) == 32:
                    break
    return "".join(out)


def is_ipv4(text):
    m = _IPV4.fullmatch(text) if isinstance(text, str) else None
    return bool(m) and all(int(g) <= 255 for g in m.groups())


def is_short_hostname(text):
    """A single DNS label that is not all digits (so never an IP or an FQDN)."""
    return (isinstance(text, str) and bool(_HOSTLABEL.fullmatch(text))
            and not text.isdigit())


def is_cluster_name(text):
    return (isinstance(text, str) and 1 <= len(text) <= 40
            and bool(_LABEL.fullmatch(text)))


def is_address(text):
    return isinstance(text, str) and (is_ipv4(text) or (len(text) <= 253
                                                and bool(_DNSNAME.fullmatch(text))))


def make_spec(cluster, role, master_address=None, workers=None, master_workers=0,
              expected_nodes=0, ttl_deadline=None, disco_port=8989, join_port=8990,
              erlang_ports=(30000, 30063), token=None, cookie=None, hostname=None,
              master_name="master", idle_stop=None, launcher_key=None):
    """Build and validate a spec dict; token and cookie are made when not given.

    idle_stop: seconds without a Disco job after which the master stops the whole
    cluster (imagebake_agent.idle); None leaves the field out.
    launcher_key: the launcher's own HMAC key for cluster-wide orders (extend, leave,
    status); made for a master spec when not given, refused in a node's spec."""
    spec = {
        "version": VERSION,
        "cluster": cluster,
        "role": role,
        "hostname": hostname,
        "master": {"address": master_address, "name": master_name,
                   "join_port": join_port},
        "token": token if token is not None else new_token(),
        "cookie": cookie if cookie is not None else new_cookie(),
        "workers": workers,
        "master_workers": master_workers,
        "expected_nodes": expected_nodes,
        "ttl_deadline": ttl_deadline,
        "disco_port": disco_port,
        "erlang_ports": list(erlang_ports) if erlang_ports is not None else None,
    }
    if idle_stop is not None:
        spec["idle_stop"] = idle_stop
    if launcher_key is not None or role == "master":
        spec["launcher_key"] = launcher_key if launcher_key is not None else new_token()
    validate_spec(spec)
    return spec


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _port(spec, value, what):
    if not _int(value) or not 1 <= value <= 65535:
        raise SpecError("%s must be an integer port 1-65535, got %r" % (what, value))


def validate_spec(spec):
    """Raise SpecError (one line) unless spec is a usable version-1 spec."""
    if not isinstance(spec, dict):
        raise SpecError("spec must be a JSON object")
    unknown = sorted(set(spec) - set(FIELDS))
    if unknown:
        raise SpecError("unknown spec field(s): %s" % ", ".join(unknown))
    if spec.get("version") != VERSION:
        raise SpecError("spec version must be %d, got %r" % (VERSION, spec.get("version")))
    if not is_cluster_name(spec.get("cluster")):
        raise SpecError("cluster name must be 1-40 chars of [a-z0-9-], not starting or "
                        "ending with '-': %r" % (spec.get("cluster"),))
    role = spec.get("role")
    if role not in ("master", "node"):
        raise SpecError("role must be 'master' or 'node', got %r" % (role,))
    hostname = spec.get("hostname")
    if hostname is not None and not is_short_hostname(hostname):
        raise SpecError("hostname must be a short host name (one label), got %r" % (hostname,))
    master = spec.get("master")
    if not isinstance(master, dict) or set(master) - {"address", "name", "join_port"}:
        raise SpecError("master must be an object with address, name, join_port")
    address = master.get("address")
    if address is not None and not is_address(address):
        raise SpecError("master.address must be an IPv4 address or a DNS name, got %r"
                        % (address,))
    if role == "node" and not address:
        raise SpecError("a node spec needs master.address")
    name = master.get("name")
    if name is not None and not is_short_hostname(name):
        raise SpecError("master.name must be a short host name, got %r" % (name,))
    _port(spec, master.get("join_port"), "master.join_port")
    _port(spec, spec.get("disco_port"), "disco_port")
    token = spec.get("token")
    if not isinstance(token, str) or not _HEX64.fullmatch(token):
        raise SpecError("token must be 64 lowercase hex chars (32 bytes)")
    if "launcher_key" in spec:
        if role != "master":
            raise SpecError("launcher_key belongs in the master's spec only (a node holding "
                            "it could order the whole cluster)")
        key = spec["launcher_key"]
        if not isinstance(key, str) or not _HEX64.fullmatch(key) or key == token:
            raise SpecError("launcher_key must be 64 lowercase hex chars (32 bytes), not the "
                            "token")
    cookie = spec.get("cookie")
    if not isinstance(cookie, str) or not _COOKIE.fullmatch(cookie):
        raise SpecError("cookie must be 32 chars of [A-Z0-9]")
    workers = spec.get("workers")
    if workers is not None and (not _int(workers) or workers < 1):
        raise SpecError("workers must be a positive integer or null (= cores), got %r"
                        % (workers,))
    for field in ("master_workers", "expected_nodes"):
        value = spec.get(field)
        if not _int(value) or value < 0:
            raise SpecError("%s must be an integer >= 0, got %r" % (field, value))
    ttl = spec.get("ttl_deadline")
    if ttl is not None and (not _int(ttl) or ttl <= 0):
        raise SpecError("ttl_deadline must be a unix time (integer) or null, got %r" % (ttl,))
    idle = spec.get("idle_stop")
    if "idle_stop" in spec and (not _int(idle) or idle <= 0):
        raise SpecError("idle_stop must be a whole number of seconds > 0 (left out: none), "
                        "got %r" % (idle,))
    ports = spec.get("erlang_ports")
    if (not isinstance(ports, list) or len(ports) != 2
            or not all(_int(p) and 1024 <= p <= 65535 for p in ports)
            or ports[0] > ports[1]):
        raise SpecError("erlang_ports must be [min, max] with 1024 <= min <= max <= 65535, "
                        "got %r" % (ports,))
    if role == "master" and (master.get("join_port") == spec.get("disco_port")):
        raise SpecError("master.join_port and disco_port must differ")
    if len(dumps(spec, check=False)) > MAX_BYTES:
        raise SpecError("spec is larger than %d bytes" % MAX_BYTES)
    return spec


def dumps(spec, check=True):
    """Canonical compact JSON (sorted keys, no spaces, ASCII)."""
    if check:
        validate_spec(spec)
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def loads(text):
    """Parse and validate; raise SpecError on any problem."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError("spec is not UTF-8") from None
    if len(text) > 4 * MAX_BYTES:
        raise SpecError("spec is too large")
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise SpecError("spec is not JSON: %s" % str(exc).splitlines()[0]) from None
    validate_spec(spec)
    return spec


def master_name(spec):
    """The master's short host name (defaults to 'master')."""
    return spec["master"].get("name") or "master"


def join_port(spec):
    return spec["master"]["join_port"]
