"""The source AMI the AWS bake starts from, by `--var base=`: `trusty` (default) is
Canonical's newest Ubuntu 14.04 HVM SSD image (past its end of life, so AWS marks its
images deprecated; they only show up with IncludeDeprecated=True); `debian-12` is
Debian's own newest Debian 12 amd64 image (owner 136693071363, the Debian cloud team),
the stack every local test runs (OTP 25, Python 3.11), logged in as `admin`, with
IMDSv2 required (its cloud-init speaks it). For a source AMI the user names
(`--var source_ami=`) the AMI itself decides IMDSv2: Ubuntu >= 20.04, Debian >= 11 or
ImdsSupport v2.0 require it; trusty and other older bases keep IMDSv1 on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions

from ..clients import aws
from ..errors import ImagebakeError

CANONICAL = "099720109477"
DEBIAN = "136693071363"
TRUSTY_PATTERN = "ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-amd64-server-*"
# The first releases whose cloud-init (>= 20.1) fetches user data with IMDSv2 tokens.
IMDSV2_UBUNTU = (20, 4)
IMDSV2_DEBIAN = 11
_UBUNTU = re.compile(r"ubuntu-[a-z]+-(\d{2})\.(\d{2})-")
_DEBIAN = re.compile(r"(?:^|/)debian-(\d{1,2})-")


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
    given = effective.get("source_ami")
    if not given:
        effective["source_ami"] = resolve_source_ami(region, session, name)
    if not effective.get("imdsv2_support"):
        # not given: a user's own AMI decides by itself (Ubuntu >= 20.04, Debian >= 11:
        # yes); the resolved trusty keeps its fence
        effective["imdsv2_support"] = (base_imdsv2_support(region, given, session) if given
                                       else "no")
    return spec


def imdsv2_support(image: dict) -> str:
    """'yes' when the base IMAGE boots with IMDSv2 only: it says so (ImdsSupport v2.0),
    or it is Ubuntu >= 20.04 or Debian >= 11 by its name; 'no' otherwise (trusty's
    cloud-init 0.7.5 predates IMDSv2: the launcher keeps IMDSv1 on for it)."""
    if image.get("ImdsSupport") == "v2.0":
        return "yes"
    name = str(image.get("Name") or "")
    ubuntu, debian = _UBUNTU.search(name), _DEBIAN.search(name)
    if ubuntu:
        return "yes" if (int(ubuntu[1]), int(ubuntu[2])) >= IMDSV2_UBUNTU else "no"
    if debian:
        return "yes" if int(debian[1]) >= IMDSV2_DEBIAN else "no"
    return "no"


def base_imdsv2_support(region: str, ami: str, session: boto3.Session | None = None) -> str:
    """imdsv2_support of the source AMI AMI in REGION (one DescribeImages call)."""
    session = session or aws.make_session(region, None)
    client: Any = aws.ec2(session, region)
    try:
        images = client.describe_images(ImageIds=[ami], IncludeDeprecated=True)["Images"]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise ImagebakeError(aws.explain(exc, f"looking up the source AMI {ami}",
                                         region=region)) from None
    if not images:
        raise ImagebakeError(f"source AMI {ami} not found in {region}: pass one of that "
                             "region (--var source_ami=ami-...)")
    return imdsv2_support(images[0])
