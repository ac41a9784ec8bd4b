"""The EC2 fabric of a qemu cluster, emulated by one small stdlib process per cluster.

Started by the launcher inside the cluster's network namespace (`ip netns exec`), it is
what EC2 itself provides to an instance, and nothing more:

- the instance metadata service at 169.254.169.254:80 (an address on the cluster
  bridge): IMDSv2 (`PUT /latest/api/token` with X-aws-ec2-metadata-token-ttl-seconds),
  IMDSv1 only for an instance launched with HttpTokens=optional (required: 401 without
  a valid token), each instance answered by its source address: user-data,
  meta-data/{instance-id, local-ipv4, local-hostname, hostname, mac, ami-id,
  instance-type, placement/availability-zone, placement/region, public-keys, public-ipv4
  when it has one, network/interfaces/macs/MAC/...}, dynamic/instance-identity/document;
  any API version (latest, dates);
- the VPC's DHCP: each instance's MAC gets its fixed private address, a /24, and one
  classless static route (option 121): 169.254.169.254/32 on the link. No router, no DNS
  server: the cluster has no route out;
- the instance's "public address" as seen from the host: listening sockets the launcher
  bound on the host's 127.0.0.1 (inherited descriptors, so they stay in the host's
  namespace) forwarded to the master's ports from the fabric's address on the bridge.

The configuration (a root-only JSON file, it holds the user data) is re-read on SIGHUP:
`grow` adds instances, `set_http_tokens` is ModifyInstanceMetadataOptions. Every request
is logged (one line: source, method, path, status, token used) to the log file.

Stdlib only and self-contained: run as a script (python3 imds.py --config ...) or
imported (tests run serve() on 127.0.0.1).
"""

import argparse
import json
import os
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

METADATA_ADDRESS = "169.254.169.254"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MAX_TOKEN_TTL = 21600
VERSION_RE = re.compile(r"\A(latest|\d{4}-\d{2}-\d{2})\Z")
API_VERSIONS = ("1.0", "2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23", "latest")


# ---------------------------------------------------------------- metadata
def metadata_tree(inst: dict) -> dict:
    """The meta-data/ tree of one instance (leaves are strings)."""
    tree = {
        "ami-id": inst.get("ami-id", "ami-00000000000000000"),
        "ami-launch-index": str(inst.get("ami-launch-index", 0)),
        "hostname": inst["local-hostname"],
        "instance-id": inst["instance-id"],
        "instance-type": inst.get("instance-type", "t2.medium"),
        "local-hostname": inst["local-hostname"],
        "local-ipv4": inst["local-ipv4"],
        "mac": inst["mac"],
        "placement": {"availability-zone": inst["availability-zone"],
                      "region": inst["region"]},
        "services": {"domain": "amazonaws.com", "partition": "aws"},
        # EC2 always has it; cloud-init renders DHCP on the primary NIC from it (without
        # it, cloud-init 22.4 re-crawls at init-network and its ephemeral DHCP fails)
        "network": {"interfaces": {"macs": {inst["mac"]: {
            "device-number": "0", "interface-id": "eni-0" + inst["instance-id"][3:],
            "local-hostname": inst["local-hostname"], "local-ipv4s": inst["local-ipv4"],
            "mac": inst["mac"], "owner-id": "000000000000",
            "subnet-id": "subnet-00000000000000001",
            "subnet-ipv4-cidr-block": inst.get("subnet", "10.77.0.0/24"),
            "vpc-id": "vpc-00000000000000001",
            "vpc-ipv4-cidr-block": inst.get("subnet", "10.77.0.0/24"),
            "vpc-ipv4-cidr-blocks": inst.get("subnet", "10.77.0.0/24"),
        }}}},
    }
    if inst.get("spot-instance-action"):  # EC2's 2-minute notice: {"action", "time"}
        tree["spot"] = {"instance-action": json.dumps(inst["spot-instance-action"])}
    if inst.get("rebalance"):  # {"noticeTime": ...}
        tree["events"] = {"recommendations": {"rebalance": json.dumps(inst["rebalance"])}}
    if inst.get("public-ipv4"):
        tree["public-ipv4"] = inst["public-ipv4"]
    if inst.get("public-keys"):
        tree["public-keys"] = inst["public-keys"]  # [[name, key], ...]
    return tree


def identity_document(inst: dict) -> str:
    return json.dumps({
        "accountId": "000000000000", "architecture": "x86_64",
        "availabilityZone": inst["availability-zone"], "imageId": inst.get("ami-id", ""),
        "instanceId": inst["instance-id"], "instanceType": inst.get("instance-type", ""),
        "pendingTime": inst.get("pending-time", ""), "privateIp": inst["local-ipv4"],
        "region": inst["region"], "version": "2017-09-30",
    }, indent=2)


def _listing(node: dict) -> str:
    return "\n".join(k + "/" if isinstance(v, (dict, list)) else k
                     for k, v in sorted(node.items()))


def lookup(inst: dict, parts: list) -> "tuple[int, bytes]":
    """(status, body) for /<version>/PARTS... of instance INST."""
    if not parts or parts == [""]:
        top = ["dynamic", "meta-data"] + (["user-data"] if inst.get("user-data") is not None
                                           else [])
        return 200, "\n".join(top).encode()
    head, rest = parts[0], [p for p in parts[1:] if p]
    if head == "user-data" and not rest:
        data = inst.get("user-data")
        return (404, b"") if data is None else (200, data.encode("utf-8"))
    if head == "dynamic":
        node = {"instance-identity": {"document": identity_document(inst)}}
    elif head == "meta-data":
        node = metadata_tree(inst)
    else:
        return 404, b""
    for i, part in enumerate(rest):
        if part == "public-keys" and isinstance(node, dict) \
                and isinstance(node.get("public-keys"), list):
            return _public_keys(node["public-keys"], rest[i + 1:])
        if not isinstance(node, dict) or part not in node:
            return 404, b""
        node = node[part]
    if isinstance(node, dict):
        return 200, _listing(node).encode()
    return 200, str(node).encode()


def _public_keys(keys: list, rest: list) -> "tuple[int, bytes]":
    """EC2's shape: public-keys/ -> 0=name; public-keys/0/ -> openssh-key; .../openssh-key."""
    if not rest:
        return 200, "\n".join(f"{i}={k[0]}" for i, k in enumerate(keys)).encode()
    if not rest[0].isdigit() or int(rest[0]) >= len(keys):
        return 404, b""
    key = keys[int(rest[0])]
    if len(rest) == 1:
        return 200, b"openssh-key"
    if rest[1:] == ["openssh-key"]:
        return 200, (key[1] + "\n").encode()
    return 404, b""


# ---------------------------------------------------------------- the HTTP service
class Fabric:
    """Instances by private address, tokens, the request log."""

    def __init__(self, config: dict, log=None):
        self.lock = threading.Lock()
        self.instances: dict = {}
        self.tokens: dict = {}  # token -> (address, expiry)
        self.log = log
        self.load(config)

    def load(self, config: dict) -> None:
        with self.lock:
            self.instances = dict(config.get("instances") or {})

    def instance(self, address: str):
        with self.lock:
            return self.instances.get(address)

    def note(self, line: str) -> None:
        if self.log is not None:
            self.log.write("{} {}\n".format(time.strftime("%H:%M:%S"), line))
            self.log.flush()

    def new_token(self, address: str, ttl: int) -> str:
        token = secrets.token_urlsafe(42)
        with self.lock:
            now = time.monotonic()
            self.tokens = {t: v for t, v in self.tokens.items() if v[1] > now}
            self.tokens[token] = (address, now + ttl)
        return token

    def token_ok(self, token: str, address: str) -> bool:
        with self.lock:
            entry = self.tokens.get(token)
        return bool(entry) and entry[0] == address and entry[1] > time.monotonic()


class _Handler(BaseHTTPRequestHandler):
    server_version = "EC2ws"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # our own one line per request (Fabric.note)
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None,
              used: str = "-") -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server.fabric.note(
            f"{self.client_address[0]} {self.command} {self.path} {code} token={used}")

    def do_PUT(self):  # noqa: N802 - http.server naming
        fabric = self.server.fabric
        inst = fabric.instance(self.client_address[0])
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 65536))
        if inst is None:
            return self._send(403)
        if self.path.split("?")[0] != "/latest/api/token":
            return self._send(405)
        if self.headers.get("X-Forwarded-For"):
            return self._send(403)  # EC2 refuses a token through a proxy
        try:
            ttl = int(self.headers.get(TTL_HEADER, ""))
        except ValueError:
            return self._send(400)
        if not 1 <= ttl <= MAX_TOKEN_TTL:
            return self._send(400)
        token = fabric.new_token(self.client_address[0], ttl)
        self._send(200, token.encode(), {TTL_HEADER: str(ttl)}, used="new")

    def do_GET(self):  # noqa: N802
        fabric = self.server.fabric
        address = self.client_address[0]
        inst = fabric.instance(address)
        if inst is None:
            return self._send(403)
        token = self.headers.get(TOKEN_HEADER)
        if token is not None:
            if not fabric.token_ok(token, address):
                return self._send(401, used="invalid")
            used = "v2"
        elif inst.get("http_tokens", "required") == "required":
            return self._send(401, used="none")
        else:
            used = "v1"
        path = self.path.split("?")[0]
        if path in ("", "/"):
            return self._send(200, "\n".join(API_VERSIONS).encode(), used=used)
        parts = path.lstrip("/").split("/")
        if not VERSION_RE.match(parts[0]):
            return self._send(404, used=used)
        code, body = lookup(inst, parts[1:])
        self._send(code, body, used=used)

    do_HEAD = do_GET  # noqa: N815

    def do_POST(self):  # noqa: N802
        self._send(405)


class MetadataServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fabric: Fabric, address: str = METADATA_ADDRESS, port: int = 80):
        self.fabric = fabric
        ThreadingHTTPServer.__init__(self, (address, port), _Handler)


def serve(config: dict, address: str = "127.0.0.1", port: int = 0, log=None):
    """Start the metadata service in a thread (tests); returns (server, url)."""
    server = MetadataServer(Fabric(config, log), address, port)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    return server, f"http://{address}:{server.server_address[1]}"


# ---------------------------------------------------------------- DHCP (the VPC's)
DHCP_MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8


def _options(data: bytes) -> dict:
    out, i = {}, 0
    while i < len(data):
        code = data[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= len(data):
            break
        size = data[i + 1]
        out[code] = data[i + 2:i + 2 + size]
        i += 2 + size
    return out


def _opt(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def dhcp_reply(packet: bytes, leases: dict, server_ip: str, prefix: int,
               lease_seconds: int = 3600):
    """The reply to one client packet, or None. LEASES: mac (aa:bb:..) -> address."""
    if len(packet) < 240 or packet[0] != 1 or packet[236:240] != DHCP_MAGIC:
        return None
    opts = _options(packet[240:])
    kind = opts.get(53, b"\0")[0]
    mac = ":".join(f"{b:02x}" for b in packet[28:34])
    address = leases.get(mac)
    if address is None or kind not in (DISCOVER, REQUEST, INFORM):
        return None
    if kind == DISCOVER:
        answer = OFFER
    elif kind == INFORM:
        answer = ACK
    else:
        wanted = opts.get(50) or packet[12:16]
        answer = ACK if socket.inet_aton(address) == bytes(wanted) else NAK
        server = opts.get(54)
        if server is not None and bytes(server) != socket.inet_aton(server_ip):
            return None  # the client chose another server
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    network = struct.unpack("!I", socket.inet_aton(address))[0] & mask
    broadcast = socket.inet_ntoa(struct.pack("!I", network | (~mask & 0xFFFFFFFF)))
    reply = bytearray(240)
    reply[0:4] = bytes([2, 1, 6, 0])
    reply[4:8] = packet[4:8]  # xid
    reply[10:12] = packet[10:12]  # flags
    reply[12:16] = packet[12:16]  # ciaddr
    if answer == OFFER or (answer == ACK and kind == REQUEST):
        reply[16:20] = socket.inet_aton(address)  # yiaddr
    reply[20:24] = socket.inet_aton(server_ip)
    reply[28:44] = packet[28:44]  # chaddr
    reply[236:240] = DHCP_MAGIC
    body = _opt(53, bytes([answer])) + _opt(54, socket.inet_aton(server_ip))
    if answer != NAK:
        route = bytes([32]) + socket.inet_aton(METADATA_ADDRESS) + bytes(4)  # on-link
        body += _opt(1, struct.pack("!I", mask)) + _opt(28, socket.inet_aton(broadcast))
        body += _opt(121, route)
        if kind != INFORM:
            body += (_opt(51, struct.pack("!I", lease_seconds))
                     + _opt(58, struct.pack("!I", lease_seconds // 2))
                     + _opt(59, struct.pack("!I", lease_seconds * 7 // 8)))
    return bytes(reply) + body + b"\xff", answer, mac, address


def run_dhcp(fabric: Fabric, interface: str, server_ip: str, prefix: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode() + b"\0")
    sock.bind(("0.0.0.0", 67))

    def loop():
        while True:
            packet, _peer = sock.recvfrom(4096)
            with fabric.lock:
                leases = {i["mac"]: a for a, i in fabric.instances.items()}
            try:
                out = dhcp_reply(packet, leases, server_ip, prefix)
            except (IndexError, OSError, ValueError):
                continue
            if out is None:
                continue
            reply, answer, mac, address = out
            ciaddr = socket.inet_ntoa(packet[12:16])
            to = ciaddr if ciaddr != "0.0.0.0" else "255.255.255.255"
            try:
                sock.sendto(reply, (to, 68))
            except OSError as exc:
                fabric.note(f"dhcp {mac} -> {address}: send failed: {exc}")
                continue
            fabric.note("dhcp {} {} {}".format(mac, {OFFER: "offer", ACK: "ack", NAK: "nak"}
                                            [answer], address))

    threading.Thread(target=loop, daemon=True).start()


# ---------------------------------------------------------------- forwards
def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def run_forward(listener: socket.socket, target: tuple, source_ip: str | None) -> None:
    def loop():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=_connect, args=(client,), daemon=True).start()

    def _connect(client):
        try:
            upstream = socket.create_connection(
                target, timeout=10, source_address=(source_ip, 0) if source_ip else None)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        t = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
        t.start()
        _pump(upstream, client)
        t.join()
        client.close()
        upstream.close()

    threading.Thread(target=loop, daemon=True).start()


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--address", default=METADATA_ADDRESS)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--dhcp", help="INTERFACE,SERVER_IP,PREFIX: serve the VPC's DHCP")
    parser.add_argument("--forward", action="append", default=[],
                        help="FD:IP:PORT: accept on inherited socket FD, connect to IP:PORT")
    parser.add_argument("--source", help="source address of the forwarded connections")
    args = parser.parse_args(argv)
    log = open(args.log, "a", buffering=1)

    def read_config():
        with open(args.config) as fh:
            return json.load(fh)

    fabric = Fabric(read_config(), log)

    def reload(_signum, _frame):
        try:
            fabric.load(read_config())
            fabric.note(f"config reloaded: {len(fabric.instances)} instances")
        except (OSError, ValueError) as exc:
            fabric.note(f"config reload failed: {exc}")

    signal.signal(signal.SIGHUP, reload)
    server = MetadataServer(fabric, args.address, args.port)
    if args.dhcp:
        interface, server_ip, prefix = args.dhcp.split(",")
        run_dhcp(fabric, interface, server_ip, int(prefix))
    for spec in args.forward:
        fd, ip, port = spec.split(":")
        listener = socket.socket(fileno=int(fd))
        run_forward(listener, (ip, int(port)), args.source)
    fabric.note(f"ready: metadata on {args.address}:{server.server_address[1]}, "
                f"{len(fabric.instances)} instances, pid {os.getpid()}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
