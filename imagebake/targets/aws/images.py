"""The aws target's images (AMIs): what the bake needs from it (build.ImageKind)."""

from __future__ import annotations

from ...bake import existing, records
from ...bake.build import ImageKind, Prepared
from ...bake.images import finish_amis
from ...bake.variables import COMMON_VARS
from ...clients import aws


def prepare(effective: dict[str, str]) -> Prepared:
    session = aws.make_session(effective.get("aws_region") or None, None)
    region = session.region_name
    effective["aws_region"] = region
    from ...bake.source_ami import apply_base

    apply_base(effective, region, session)  # --var base=: source AMI, login user, IMDSv2
    client = aws.ec2(session, region)
    return Prepared(find=lambda role, digest: existing.aws_image(client, region, role, digest),
                    region=region)


KIND = ImageKind(name="aws", source_type="amazon-ebs",
                 variables=("base", *COMMON_VARS, "aws_region", "source_ami", "instance_type",
                            "ssh_username", "subnet_id", "encrypt_boot", "ami_name_prefix",
                            "imdsv2_support", "ami_regions", "ami_deprecate_after"),
                 prepare=prepare, entry=records.ami_entry,
                 # IMDS support and deprecation: the EC2 API, whatever Packer's version
                 finish=finish_amis)
