"""The source AMI the AWS bake starts from, by `--var base=`: `trusty` (default) is
Canonical's newest Ubuntu 14.04 HVM SSD image (past its end of life, so AWS marks its
images deprecated; they only show up with IncludeDeprecated=True); `debian-12` is
Debian's own newest Debian 12 amd64 image (owner 136693071363, the Debian cloud team),
the stack every local test runs (OTP 25, Python 3.11), logged in as `admin`, with
IMDSv2 required (its cloud-init speaks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions

from ..clients import aws
from ..errors import ImagebakeError

CANONICAL = "099720109477"
DEBIAN = "136693071363"
TRUSTY_PATTERN = "ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-amd64-server-*"


@dataclass(frozen=True)
class Base:
    """An AWS base: whose images, which names, and what the bake must know about them."""

    label: str
    owner: str
    pattern: str
    include_deprecated: bool
    ssh_username: str
    imdsv2: bool  # its cloud-init speaks IMDSv2: the AMIs require it


BASES = {
    "trusty": Base("Ubuntu 14.04 (trusty)", CANONICAL, TRUSTY_PATTERN, True, "ubuntu", False),
    "debian-12": Base("Debian 12 (bookworm)", DEBIAN, "debian-12-amd64-*", False, "admin", True),
}
DEFAULT_BASE = "trusty"


def resolve_source_ami(region: str, session: boto3.Session | None = None,
                       base: str = DEFAULT_BASE) -> str:
    """The newest (by CreationDate) amd64 image of BASE in REGION."""
    spec = BASES[base]
    session = session or aws.make_session(region, None)
    client: Any = aws.ec2(session, region)
    try:
        images = client.describe_images(
            Owners=[spec.owner], IncludeDeprecated=spec.include_deprecated,
            Filters=[{"Name": "name", "Values": [spec.pattern]},
                     {"Name": "architecture", "Values": ["x86_64"]},
                     {"Name": "state", "Values": ["available"]}],
        )["Images"]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise ImagebakeError(aws.explain(exc, f"looking up the {spec.label} source AMI",
                                         region=region)) from None
    if not images:
        raise ImagebakeError(
            f"no {spec.label} image from its publisher ({spec.owner}) in {region}: "
            "pass the source AMI as a Packer variable (--var source_ami=ami-...)")
    newest = max(images, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))
    return str(newest["ImageId"])


def apply_base(effective: dict[str, str], region: str,
               session: boto3.Session | None = None) -> Base:
    """Fill in what `--var base=` decides and the user did not give: the source AMI, the
    login user, and IMDSv2 (required for a base whose cloud-init speaks it; asking for
    `imdsv2_support=no` there is refused)."""
    name = effective.get("base") or DEFAULT_BASE
    if name not in BASES:
        raise ImagebakeError(f"--var base={name}: expected one of {', '.join(BASES)}")
    spec = BASES[name]
    if spec.imdsv2:
        if effective.get("imdsv2_support") == "no":
            raise ImagebakeError(f"--var imdsv2_support=no: the {spec.label} base requires "
                                 "IMDSv2 (drop the variable)")
        effective["imdsv2_support"] = "yes"
    effective.setdefault("ssh_username", spec.ssh_username)
    if not effective.get("source_ami"):
        effective["source_ami"] = resolve_source_ami(region, session, name)
    return spec
