"""Launch checks that ask AWS, still creating nothing: the session and region, the
caller, the AMIs, the instance types, the key pair and that the name is free.
(Checks that need no AWS call are in inputs.py.) Each failure is one line."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import boto3
import botocore.exceptions

from ... import state
from ...bake.records import images_json_path
from ...clients import aws
from ...errors import ImagebakeError
from . import instances as ec2i
from . import network

ROLE_TAG = ec2i.ROLE_TAG
IMDS_TAG = "imagebake:imdsv2"
AWS_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)


def session(region: str | None, profile: str | None, factory: aws.SessionFactory | None
            ) -> tuple[boto3.Session, str]:
    """A session with credentials, and a region that exists."""
    made = aws.make_session(region, profile, factory)
    region = network.check_region(made, region or made.region_name)
    return made, region


_ASSUMED_ROLE = re.compile(r"arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/[^/]+")


def principal_arn(caller_arn: str) -> str:
    """The owner tag's value: the caller's ARN as IAM's aws:PrincipalArn holds it, so
    that iam/launch-policy.json can compare the two. GetCallerIdentity and aws:PrincipalArn
    agree for users, federated users and root; for a role session GetCallerIdentity says
    arn:aws:sts::ACCT:assumed-role/ROLE/SESSION and aws:PrincipalArn is the role,
    arn:aws:iam::ACCT:role/PATH/ROLE. The STS ARN has no PATH, so this gives
    arn:aws:iam::ACCT:role/ROLE: exact for roles at path "/" (see docs/aws.md, IAM)."""
    found = _ASSUMED_ROLE.fullmatch(caller_arn)
    if found:
        partition, account, role = found.groups()
        return f"arn:{partition}:iam::{account}:role/{role}"
    return caller_arn


def owner(made: boto3.Session) -> str:
    """The caller as the owner tag names it (principal_arn); credentials AWS rejects
    are one line."""
    try:
        return principal_arn(str(aws.sts(made).get_caller_identity()["Arn"]))
    except AWS_ERRORS as exc:
        if aws.error_code(exc) in aws.AUTH_CODES:
            raise ImagebakeError(
                f"AWS rejected your credentials ({aws.error_code(exc)}): "
                "run `aws configure` or set AWS_PROFILE") from None
        raise ImagebakeError(aws.explain(exc, "checking your AWS identity")) from None


def default_amis(region: str, roles: list[str]) -> dict[str, str]:
    """{role: ami} from build/images.json (written by `invoke bake --target aws`)."""
    if not roles:
        return {}
    path = images_json_path()
    hint = "run `invoke bake --target aws` or pass --master-ami and --node-ami"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ImagebakeError(f"no AWS images: {path} does not exist: {hint}") from None
    except (OSError, ValueError) as exc:
        raise ImagebakeError(f"cannot read {path}: {aws.one_line(exc)}: {hint}") from None
    out: dict[str, str] = {}
    for role in roles:
        entry = ((data or {}).get("aws") or {}).get(role) or {}
        ami = entry.get("id")
        if not ami:
            raise ImagebakeError(f"no AWS {role} image in {path}: {hint}")
        baked_in = entry.get("region")
        if baked_in and baked_in != region:
            raise ImagebakeError(
                f"the {role} image {ami} was baked in {baked_in}, not {region}: "
                f"pass --region {baked_in} or --{role}-ami with an AMI of {region}")
        out[role] = ami
    return out


def amis(client: Any, region: str, wanted: dict[str, str]) -> dict[str, dict]:
    """Both AMIs exist in REGION, are available and carry the right imagebake:role."""
    ids = sorted(set(wanted.values()))
    try:
        images = client.describe_images(ImageIds=ids)["Images"]
    except botocore.exceptions.ClientError as exc:
        if aws.error_code(exc).startswith("InvalidAMIID"):
            raise ImagebakeError(
                f"AMI {' / '.join(ids)} not found in {region}: an AMI belongs to one region; "
                "bake with `invoke bake --target aws` or pass --master-ami/--node-ami") from None
        raise ImagebakeError(aws.explain(exc, "looking up the AMIs", region=region)) from None
    by_id = {i["ImageId"]: i for i in images}
    out = {}
    for role, ami in wanted.items():
        image = by_id.get(ami)
        if image is None:
            raise ImagebakeError(f"AMI {ami} not found in {region}: pass --{role}-ami")
        tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
        if tags.get(ROLE_TAG) != role:
            found = tags.get(ROLE_TAG)
            what = f"an imagebake {found} image" if found else f"not tagged {ROLE_TAG}"
            raise ImagebakeError(
                f"AMI {ami} is {what}, not a {role} image: pass --{role}-ami with "
                f"an AMI tagged {ROLE_TAG}={role}")
        if image.get("State", "available") != "available":
            raise ImagebakeError(f"AMI {ami} is {image.get('State')}, not available yet")
        out[role] = image
    return out


def imdsv2(image: dict) -> bool:
    """IMDSv2 only ('required') when the image says it copes: tag imagebake:imdsv2=yes
    (written at bake time) or ImdsSupport v2.0. Trusty's cloud-init 0.7.5 does not."""
    tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    return tags.get(IMDS_TAG, "").lower() == "yes" or image.get("ImdsSupport") == "v2.0"


def instance_types(client: Any, types: list[str], images: dict[str, dict],
                   role_types: dict[str, str]) -> dict[str, dict]:
    """Every type exists and runs its role's AMI architecture."""
    wanted = sorted(set(types))
    try:
        found = client.describe_instance_types(InstanceTypes=wanted)["InstanceTypes"]
    except botocore.exceptions.ClientError as exc:
        if aws.error_code(exc) in ("InvalidInstanceType", "InvalidParameterValue"):
            raise ImagebakeError(
                f"unknown instance type {' / '.join(wanted)}: "
                "see `aws ec2 describe-instance-types`, e.g. t3.medium") from None
        raise ImagebakeError(aws.explain(exc, "checking instance types")) from None
    info = {t["InstanceType"]: t for t in found}
    for t in wanted:
        if t not in info:
            raise ImagebakeError(f"unknown instance type {t}: see "
                                 "`aws ec2 describe-instance-types`")
    for role, itype in role_types.items():
        arch = images[role].get("Architecture")
        archs = info[itype].get("ProcessorInfo", {}).get("SupportedArchitectures") or []
        if arch and archs and arch not in archs:
            raise ImagebakeError(
                f"instance type {itype} runs {'/'.join(archs)}, but the {role} AMI is {arch}: "
                "pass another --instance-type")
    return info


PLACEMENT_STRATEGY = "cluster"  # what network.create_placement_group makes


def placement_strategy(info: dict[str, dict], role_types: dict[str, str], wanted: bool,
                       spot_roles: tuple[str, ...] = ()) -> None:
    """With --placement-group every type must take the cluster strategy
    (DescribeInstanceTypes PlacementGroupInfo; burstable types such as t2/t3 do not): EC2
    would refuse the RunInstances only after the group and the master exist."""
    if not wanted:
        return
    for role, itype in sorted(role_types.items()):
        strategies = (info[itype].get("PlacementGroupInfo") or {}).get("SupportedStrategies")
        if strategies is not None and PLACEMENT_STRATEGY not in strategies:
            market = "spot " if role in spot_roles else ""
            raise ImagebakeError(
                f"--placement-group makes a {PLACEMENT_STRATEGY} placement group, which "
                f"{market}{itype} ({role}) cannot join (it takes "
                f"{', '.join(strategies) or 'none'}): drop --placement-group or pass a "
                "non-burstable type such as c5.large")


def spot_usage(info: dict[str, dict], role_types: dict[str, str],
               spot_roles: tuple[str, ...]) -> None:
    """Every type that is to run on spot is sold as spot (SupportedUsageClasses)."""
    for role in spot_roles:
        itype = role_types[role]
        classes = info[itype].get("SupportedUsageClasses")
        if classes is not None and "spot" not in classes:
            flag = "--spot-master" if role == "master" else "--spot"
            raise ImagebakeError(
                f"{itype} is not sold as spot ({', '.join(classes)} only): drop {flag} "
                "or pass another instance type")


def spot_offered(client: Any, region: str, az: str, types: list[str]) -> None:
    """Spot has a current price for every spot type in the cluster's zone (one
    DescribeSpotPriceHistory call from now): no price, no spot instance there."""
    if not types:
        return
    try:
        history = client.describe_spot_price_history(
            InstanceTypes=types, AvailabilityZone=az, ProductDescriptions=SPOT_PRODUCTS,
            StartTime=datetime.datetime.now(datetime.timezone.utc))["SpotPriceHistory"]
    except AWS_ERRORS as exc:
        raise ImagebakeError(aws.explain(exc, "asking for spot prices", region=region)) \
            from None
    priced = {h["InstanceType"] for h in history if h.get("AvailabilityZone") == az}
    missing = [t for t in types if t not in priced]
    if missing:
        raise ImagebakeError(
            f"spot offers no {', '.join(missing)} in {az} ({region}): drop --spot, pass "
            "another --instance-type, or a --subnet in another zone")


SPOT_PRODUCTS = ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"]


def key_pair(client: Any, key_name: str | None, region: str) -> None:
    if not key_name:
        return
    try:
        client.describe_key_pairs(KeyNames=[key_name])
    except botocore.exceptions.ClientError as exc:
        if aws.error_code(exc) == "InvalidKeyPair.NotFound":
            raise ImagebakeError(
                f"key pair {key_name!r} not found in {region}: import it with "
                "`aws ec2 import-key-pair` or pass another --key-name") from None
        raise ImagebakeError(aws.explain(exc, "looking up the key pair", region=region)) \
            from None


def name_free(client: Any, name: str, region: str, owner: str, vpc: str) -> None:
    """No record, none of the caller's live instances tagged with the cluster's name, and
    the cluster's security group name free in VPC (another principal's cluster of the same
    name elsewhere is no conflict: names are per owner)."""
    if state.load(name) is not None:
        raise ImagebakeError(
            f"a cluster named {name!r} is already recorded: `invoke destroy --name {name}` "
            "or pick another --name")
    try:
        live = ec2i.describe(client, cluster=name, owner=owner, states=ec2i.LIVE_STATES)
        groups = client.describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "group-name", "Values": [network.group_name(name)]}])["SecurityGroups"]
    except AWS_ERRORS as exc:
        raise ImagebakeError(aws.explain(exc, "checking the cluster name", region=region)) \
            from None
    if live:
        raise ImagebakeError(
            f"{len(live)} instance(s) of yours tagged {ec2i.CLUSTER_TAG}={name} exist in "
            f"{region}: `invoke destroy --name {name} --target aws` or pick another --name")
    for group in groups:
        tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
        if tags.get(ec2i.OWNER_TAG) == owner[:256]:
            raise ImagebakeError(
                f"the security group {group['GroupId']} of cluster {name!r} is left in {vpc}: "
                f"`invoke destroy --name {name} --target aws` or pick another --name")
        raise ImagebakeError(
            f"the security group {network.group_name(name)} in {vpc} belongs to another "
            f"principal ({tags.get(ec2i.OWNER_TAG) or 'no owner tag'}): pick another --name")
