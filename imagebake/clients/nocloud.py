"""cloud-init NoCloud seeds (the qemu bake's throw-away login): an ISO 9660 image
labelled cidata holding user-data and meta-data.

cloud-init's ds-identify finds it by the label and applies user-data and meta-data
(instance id, host name) and network-config. Launched qemu VMs get no seed: they take
everything from the emulated EC2 metadata service (targets/qemu/ec2.py, imds.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import ImagebakeError

LABEL = "cidata"


def iso_tool() -> list[str]:
    for tool in ("genisoimage", "mkisofs"):
        path = shutil.which(tool)
        if path:
            return [path]
    path = shutil.which("xorriso")
    if path:
        return [path, "-as", "mkisofs"]
    raise ImagebakeError("no ISO tool found: apt-get install -y genisoimage (or xorriso)")


def meta_data(instance_id: str, hostname: str) -> str:
    # JSON is YAML: cloud-init parses either.
    return json.dumps({"instance-id": instance_id, "local-hostname": hostname}) + "\n"


def static_network(mac: str, address: str, prefix: int, dns: str | None = None) -> str:
    """network-config version 1 (understood from cloud-init 0.7.x on): one static NIC."""
    subnet: dict = {"type": "static", "address": f"{address}/{prefix}"}
    if dns:
        subnet["dns_nameservers"] = [dns]
    config = {"version": 1, "config": [
        {"type": "physical", "name": "eth0", "mac_address": mac, "subnets": [subnet]},
    ]}
    return json.dumps(config) + "\n"


def write_files(folder: Path, user_data: str, meta: str, network: str | None = None) -> None:
    """The seed's files, root-only (user data may carry secrets)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = {"user-data": user_data, "meta-data": meta}
    if network is not None:
        files["network-config"] = network
    for name, text in files.items():
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)

