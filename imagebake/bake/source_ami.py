"""The source AMI the AWS bake starts from: Canonical's newest Ubuntu 14.04 HVM SSD image.

Trusty is past its end of life, so AWS marks its images deprecated; they only show
up with IncludeDeprecated=True.
"""

from __future__ import annotations

from typing import Any

import boto3
import botocore.exceptions

from ..clients import aws
from ..errors import ImagebakeError

CANONICAL = "099720109477"
TRUSTY_PATTERN = "ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-amd64-server-*"


def resolve_source_ami(region: str, session: boto3.Session | None = None) -> str:
    """The newest (by CreationDate) Canonical trusty amd64 image in REGION."""
    session = session or aws.make_session(region, None)
    client: Any = aws.ec2(session, region)
    try:
        images = client.describe_images(
            Owners=[CANONICAL], IncludeDeprecated=True,
            Filters=[{"Name": "name", "Values": [TRUSTY_PATTERN]},
                     {"Name": "architecture", "Values": ["x86_64"]},
                     {"Name": "state", "Values": ["available"]}],
        )["Images"]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise ImagebakeError(aws.explain(exc, "looking up the Ubuntu 14.04 source AMI",
                                         region=region)) from None
    if not images:
        raise ImagebakeError(
            f"no Ubuntu 14.04 (trusty) image from Canonical in {region}: "
            "pass the source AMI as a Packer variable (--var source_ami=ami-...)")
    newest = max(images, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))
    return str(newest["ImageId"])
