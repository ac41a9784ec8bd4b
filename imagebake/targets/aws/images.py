"""The aws target's images (AMIs): what the bake needs from it (build.ImageKind)."""

from __future__ import annotations

import ipaddress

from ...bake import existing, records
from ...bake.build import ImageKind, Prepared
from ...bake.images import finish_amis
from ...bake.variables import COMMON_VARS
from ...clients import aws
from ...errors import ImagebakeError
from . import network
from .inputs import WORLD_PREFIX

SSH_SOURCE = "ssh_source_cidr"  # packer/variables.pkr.hcl: who may SSH to the baking instance
SSH_SOURCE_FLAG = f"--var {SSH_SOURCE}="


def ssh_source(given: str | None) -> str:
    """The range Packer's temporary security group lets SSH in from: GIVEN (--var
    ssh_source_cidr=, checked: IPv4, no host bits, not wider than /8), else this machine's
    public address/32 from checkip (the lookup the cluster's SSH ingress uses); one line
    when neither is there. Never 0.0.0.0/0, Packer's own default."""
    if not given:
        cidr = network.caller_cidr(flag=SSH_SOURCE_FLAG)
    else:
        try:
            cidr = str(ipaddress.ip_network(given.strip(), strict=True))
        except ValueError:
            try:
                ipaddress.ip_network(given.strip(), strict=False)
            except ValueError:
                raise ImagebakeError(f"{SSH_SOURCE_FLAG}{given} is not a CIDR: write e.g. "
                                     f"{SSH_SOURCE_FLAG}203.0.113.7/32") from None
            raise ImagebakeError(f"{SSH_SOURCE_FLAG}{given} has host bits set") from None
    found = ipaddress.ip_network(cidr)
    if found.version != 4:  # Packer 1.6.6 puts the range in an IPv4 rule (CidrIp)
        raise ImagebakeError(f"{SSH_SOURCE}={cidr}: Packer's temporary security group takes "
                             f"an IPv4 range: pass {SSH_SOURCE_FLAG}<your IPv4 address>/32")
    if found.prefixlen < WORLD_PREFIX:
        raise ImagebakeError(f"{SSH_SOURCE_FLAG}{given} opens SSH to the baking instance to a "
                             f"range wider than /{WORLD_PREFIX}: pass your address/32")
    return cidr


def prepare(effective: dict[str, str]) -> Prepared:
    source_cidr = ssh_source(effective.get(SSH_SOURCE))  # first: no address, no AWS call
    session = aws.make_session(effective.get("aws_region") or None, None)
    region = session.region_name
    effective["aws_region"] = region
    from ...bake.source_ami import apply_base

    apply_base(effective, region, session)  # --var base=: source AMI, login user, IMDSv2
    client = aws.ec2(session, region)
    return Prepared(find=lambda role, digest: existing.aws_image(client, region, role, digest),
                    region=region, packer_vars={SSH_SOURCE: source_cidr})  # not hashed


KIND = ImageKind(name="aws", source_type="amazon-ebs",
                 variables=("base", *COMMON_VARS, "aws_region", "source_ami", "instance_type",
                            "ssh_username", "subnet_id", "encrypt_boot", "ami_name_prefix",
                            "imdsv2_support", "ami_regions", "ami_deprecate_after"),
                 prepare=prepare, entry=records.ami_entry,
                 # IMDS support and deprecation: the EC2 API, whatever Packer's version
                 finish=finish_amis)
