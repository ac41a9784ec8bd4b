"""Where the master is: its own IPv4 address, learned on the machine (never loopback).

Nodes record and pin the address the master announces; the master takes it from the
spec only when it is really one of its own, else from EC2's metadata, else from the
route out and the interfaces.
"""

import socket

from . import imds, source
from .protocol import is_unicast
from .spec import is_ipv4
from .state import PhaseFailed

ROUTE_PROBE = "192.0.2.1"  # TEST-NET-1: a UDP connect only asks the routing table


def is_own_address(address):
    """True when this machine has address (binding to it works)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((address, 0))
        return True
    except (OSError, socket.error):
        return False
    finally:
        sock.close()


def route_address(probe=ROUTE_PROBE):
    """The source address the kernel picks toward probe (no packet is sent)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((probe, 9))
        return sock.getsockname()[0]
    except (OSError, socket.error):
        return None
    finally:
        sock.close()


def interface_addresses(ctx):
    """Global-scope IPv4 addresses from `ip -4 -o addr show scope global`."""
    result = ctx.runner.run(["ip", "-4", "-o", "addr", "show", "scope", "global"])
    found = []
    if result.ok:
        for line in result.out.splitlines():
            words = line.split()
            if "inet" in words:
                address = words[words.index("inet") + 1].split("/")[0]
                if is_ipv4(address):
                    found.append(address)
    return found


def master_own_addresses(spec, ctx=None, origin=None):
    """The master's own IPv4 address, learned on the machine; never 127.0.0.0/8.

    - master.address in the spec (the Docker launcher sets it): taken only when
      it is one of this machine's addresses;
    - spec from cloud-init or IMDS: IMDS meta-data/local-ipv4;
    - else the address routing out (the cluster network), then the first global
      interface address.
    """
    allow_loopback = bool(getattr(ctx, "allow_loopback", False))
    given = spec["master"].get("address")
    if given:
        address = given
        if not is_ipv4(address):
            try:
                address = socket.gethostbyname(given)
            except (socket.error, UnicodeError):
                raise PhaseFailed("master.address %s does not resolve" % given) from None
        if not is_unicast(address, allow_loopback):
            raise PhaseFailed("master.address %s is loopback, link-local or not unicast"
                              % address)
        if not is_own_address(address):
            raise PhaseFailed("master.address %s is not one of this machine's addresses"
                              % address)
        return [address]
    candidates = []
    imds_url = getattr(ctx, "imds_url", None)
    if imds_url and origin and (origin == source.CLOUD_INIT or origin.startswith("imds")):
        try:
            candidates.append(imds.get_metadata(imds_url, imds.LOCAL_IPV4_PATH))
        except imds.NoIMDS as exc:
            if ctx is not None:
                ctx.log.warning("IMDS local-ipv4: %s", exc)
    candidates.append(route_address())
    if ctx is not None:
        candidates += interface_addresses(ctx)
    for address in candidates:
        if address and is_unicast(address, allow_loopback=False):
            return [address]
    raise PhaseFailed("cannot learn this machine's address (no IMDS local-ipv4, no route, "
                      "no global interface address)")
