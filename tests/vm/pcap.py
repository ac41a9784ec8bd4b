"""Just enough of the pcap format to say who talked to whom on the cluster bridge."""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from pathlib import Path


def frames(path: Path):
    """(original length, frame bytes) per packet; classic pcap, Ethernet link type."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offset = 24
    while offset + 16 <= len(data):
        _, _, incl, orig = struct.unpack(endian + "IIII", data[offset:offset + 16])
        offset += 16
        yield orig, data[offset:offset + incl]
        offset += incl


def flows(path: Path) -> dict:
    """Bytes per (kind, src, dst): kind is ipv4, arp, ipv6 or other (by ethertype)."""
    out: Counter = Counter()
    for length, frame in frames(path):
        if len(frame) < 14:
            continue
        ethertype = struct.unpack("!H", frame[12:14])[0]
        body = frame[14:]
        if ethertype == 0x0800 and len(body) >= 20:
            key = ("ipv4", str(ipaddress.IPv4Address(body[12:16])),
                   str(ipaddress.IPv4Address(body[16:20])))
        elif ethertype == 0x0806 and len(body) >= 28:
            key = ("arp", str(ipaddress.IPv4Address(body[14:18])),
                   str(ipaddress.IPv4Address(body[24:28])))
        elif ethertype == 0x86DD:
            key = ("ipv6", "", "")
        else:
            key = ("other", hex(ethertype), "")
        out[key] += length
    return dict(out)
