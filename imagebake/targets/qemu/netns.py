"""The cluster's private L2 network: a bridge inside a network namespace of its own.

The namespace holds nothing but the bridge and the VMs' tap devices, and the
emulated EC2 fabric's two addresses on the bridge (qemu/ec2.py: 10.77.0.1/24, the
metadata service's 169.254.169.254/32): no veth, no route out, so VMs reach each
other and the fabric, nothing else. A tap is created in the host namespace, opened
by QEMU (-netdev tap), then moved into the cluster namespace and attached to the
bridge: the open QEMU file descriptor stays attached across the move. Deleting the
namespace deletes the bridge and every tap in it.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from ...errors import ImagebakeError

BRIDGE = "br0"
NS_PREFIX = "imagebake-"
TAP_PREFIX = "ibt"


def ns_name(cluster: str) -> str:
    return f"{NS_PREFIX}{cluster}"


def tap_name(cluster: str, index: int) -> str:
    """<= 15 characters (IFNAMSIZ): ibt + 6 hex of the cluster name + index."""
    digest = hashlib.sha256(cluster.encode()).hexdigest()[:6]
    return f"{TAP_PREFIX}{digest}-{index}"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise ImagebakeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def exists(cluster: str) -> bool:
    return Path("/run/netns", ns_name(cluster)).exists()


def create(cluster: str) -> str:
    """The namespace with lo and the bridge up; returns its name."""
    name = ns_name(cluster)
    if not exists(cluster):
        _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")
    if _ip("-n", name, "link", "show", BRIDGE, check=False).returncode != 0:
        _ip("-n", name, "link", "add", BRIDGE, "type", "bridge")
    # A pure switch: no STP delay, no IPv6 on the bridge itself (it must never speak).
    _ip("-n", name, "link", "set", BRIDGE, "type", "bridge", "stp_state", "0",
        "forward_delay", "0")
    subprocess.run(["ip", "netns", "exec", name, "sysctl", "-q", "-w",
                    f"net.ipv6.conf.{BRIDGE}.disable_ipv6=1"], capture_output=True, check=False)
    _ip("-n", name, "link", "set", BRIDGE, "up")
    return name


def add_address(cluster: str, cidr: str) -> None:
    """An address on the bridge (the EC2 fabric's: 10.77.0.1/24, 169.254.169.254/32)."""
    name = ns_name(cluster)
    have = _ip("-n", name, "-4", "-o", "addr", "show", "dev", BRIDGE).stdout
    if f" {cidr} " not in have:
        _ip("-n", name, "addr", "add", cidr, "dev", BRIDGE)


def add_tap(tap: str) -> None:
    """A persistent tap in the host namespace, for QEMU to open by name."""
    if _ip("link", "show", tap, check=False).returncode == 0:
        _ip("link", "del", tap)
    _ip("tuntap", "add", "dev", tap, "mode", "tap")


def attach(cluster: str, tap: str) -> None:
    """Move TAP (already opened by QEMU) into the namespace and onto the bridge."""
    name = ns_name(cluster)
    if _ip("-n", name, "link", "show", tap, check=False).returncode != 0:
        _ip("link", "set", tap, "netns", name)
    subprocess.run(["ip", "netns", "exec", name, "sysctl", "-q", "-w",
                    f"net.ipv6.conf.{tap}.disable_ipv6=1"], capture_output=True, check=False)
    _ip("-n", name, "link", "set", tap, "master", BRIDGE, "up")


def delete(cluster: str) -> bool:
    """Remove the namespace (its bridge and taps go with it); True if it existed."""
    existed = exists(cluster)
    if existed:
        _ip("netns", "del", ns_name(cluster))
    return existed


def leftover_taps(cluster: str) -> list[str]:
    """Taps of CLUSTER still in the host namespace (a launch stopped half-way)."""
    prefix = tap_name(cluster, 0)[:-1]
    out = _ip("-o", "link", "show", check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
             if ":" in line]
    return [n for n in names if n.startswith(prefix)]


def capture_argv(cluster: str, pcap: Path) -> list[str]:
    """tcpdump on the cluster bridge (inside the namespace), writing PCAP."""
    return ["ip", "netns", "exec", ns_name(cluster), "tcpdump", "-i", BRIDGE, "-n", "-U",
            "-s", "128", "-w", str(pcap)]
