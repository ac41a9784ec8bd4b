"""Region, subnet, caller address, the cluster's security group and placement group."""

from __future__ import annotations

import ipaddress
import os
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions

from ... import ports
from ...clients import aws
from ...errors import ImagebakeError

CHECKIP_URL = "https://checkip.amazonaws.com"
CHECKIP_ENV = "IMAGEBAKE_CHECKIP_URL"  # tests point it at a local server
CHECKIP_TIMEOUT = 4.0
SSH_PORT = 22

# Who may reach a port: the caller's --allow-cidr, or only the cluster's own members
# (the security group referencing itself).
CALLER = "caller"
MEMBERS = "members"


@dataclass(frozen=True)
class Listener:
    """A port, what listens on it, and who may reach it (Flintrock's services declare
    their own security group rules; here one table does)."""

    port: int
    listener: str
    open_to: str


LISTENERS = (
    Listener(SSH_PORT, "sshd: `invoke ssh` and `invoke tunnel` (pinned host keys)", CALLER),
    Listener(ports.AGENT, "imagebake agent: join and status, every message MAC-signed with "
                        "the cluster token", CALLER),
    Listener(ports.DISCO, "Disco master: web UI and job API, no authentication (running a "
                         "job runs code as disco on every node): reach it through "
                         "`invoke tunnel`", MEMBERS),
)
# Members also reach each other on every port (the self-referencing rule): Erlang
# distribution (epmd, 30000-30063), DDFS and Disco's workers pick their own ports.


def caller_ports() -> tuple[int, ...]:
    return tuple(entry.port for entry in LISTENERS if entry.open_to == CALLER)


PUBLIC_PORTS = caller_ports()  # the caller's CIDR reaches these and nothing else


@dataclass
class Placement:
    vpc: str
    subnet: str
    az: str


def check_region(session: boto3.Session, region: str) -> str:
    """The region exists (botocore's list, else the EC2 API's list of all regions)."""
    if not aws.REGION_RE.fullmatch(region or ""):
        raise ImagebakeError(f"unknown region {region!r}: write e.g. eu-west-1")
    known: set[str] = set()
    for partition in ("aws", "aws-cn", "aws-us-gov"):
        known.update(session.get_available_regions("ec2", partition_name=partition))
    if region in known:
        return region
    try:
        found = aws.ec2(session, "us-east-1").describe_regions(AllRegions=True)["Regions"]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise ImagebakeError(aws.explain(exc, "listing regions")) from None
    if region not in {r["RegionName"] for r in found}:
        raise ImagebakeError(
            f"unknown region {region!r}: see `aws ec2 describe-regions --all-regions`")
    return region


def find_placement(client: Any, region: str, subnet: str | None,
                   instance_types: list[str]) -> Placement:
    """The given subnet, else the default VPC's first default subnet whose zone offers
    every instance type (one DescribeInstanceTypeOfferings call)."""
    if subnet:
        try:
            found = client.describe_subnets(SubnetIds=[subnet])["Subnets"]
        except botocore.exceptions.ClientError as exc:
            if aws.error_code(exc).startswith("InvalidSubnetID"):
                raise ImagebakeError(
                    f"subnet {subnet} not found in {region}: a subnet belongs to one region, "
                    "pass the --region it is in (see `aws ec2 describe-subnets`)") from None
            raise ImagebakeError(aws.explain(exc, "looking up the subnet", region=region)) from None
        chosen = found[0]
        return Placement(chosen["VpcId"], chosen["SubnetId"], chosen["AvailabilityZone"])
    try:
        subnets = client.describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]},
                     {"Name": "state", "Values": ["available"]}])["Subnets"]
    except botocore.exceptions.ClientError as exc:
        raise ImagebakeError(aws.explain(exc, "looking up default subnets", region=region)) \
            from None
    if not subnets:
        raise ImagebakeError(
            f"no default VPC in {region}: pass --subnet with a subnet of one of your VPCs")
    offered = _zones_offering(client, instance_types)
    subnets.sort(key=lambda s: s["AvailabilityZone"])
    for candidate in subnets:
        if offered is None or candidate["AvailabilityZone"] in offered:
            return Placement(candidate["VpcId"], candidate["SubnetId"],
                             candidate["AvailabilityZone"])
    raise ImagebakeError(
        f"no zone of the default VPC in {region} offers {', '.join(instance_types)}: "
        "pass another --instance-type or --subnet")


def _zones_offering(client: Any, instance_types: list[str]) -> set[str] | None:
    """Zones offering all the types; None when the API cannot tell (then do not filter)."""
    zones: dict[str, set[str]] = {}
    try:
        pages = client.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": sorted(set(instance_types))}])
        for page in pages:
            for offer in page["InstanceTypeOfferings"]:
                zones.setdefault(offer["InstanceType"], set()).add(offer["Location"])
    except botocore.exceptions.ClientError:
        return None
    if not zones:
        return None
    sets = [zones.get(t, set()) for t in set(instance_types)]
    return set.intersection(*sets)


def caller_cidr(url: str | None = None, timeout: float = CHECKIP_TIMEOUT,
                flag: str = "--allow-cidr") -> str:
    """This machine's public address as a /32 (or /128), from checkip. FLAG is what
    the one-line error tells the user to pass instead (`--var name=` for a bake)."""
    url = url or os.environ.get(CHECKIP_ENV) or CHECKIP_URL
    example = f"{flag}{'' if flag.endswith('=') else ' '}203.0.113.7/32"
    hint = f"pass {flag.rstrip('=')} with your public address, e.g. {example}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            text = response.read(64).decode("ascii", "replace").strip()
    except (OSError, ValueError) as exc:
        raise ImagebakeError(
            f"cannot find your public address ({url}: {aws.one_line(exc)}): {hint}") from None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ImagebakeError(f"{url} did not answer with an address: {hint}") from None
    if not address.is_global:
        raise ImagebakeError(f"{url} answered a non-public address {address}: {hint}")
    return f"{address}/{address.max_prefixlen}"


CALLER_RULE = "imagebake caller"  # the description of every rule made for --allow-cidr


def caller_permissions(cidr: str, ports: tuple[int, ...] = PUBLIC_PORTS
                       ) -> list[dict[str, Any]]:
    """IpPermissions letting CIDR reach PORTS (TCP), each a rule of its own."""
    net = ipaddress.ip_network(cidr)
    ranges_key, ranges_value = (("IpRanges", [{"CidrIp": cidr, "Description": CALLER_RULE}])
                                if net.version == 4 else
                                ("Ipv6Ranges", [{"CidrIpv6": cidr, "Description": CALLER_RULE}]))
    return [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port, ranges_key: ranges_value}
            for port in ports]


def ingress_rules(group_id: str, cidr: str) -> list[dict[str, Any]]:
    """Everything between members; from CIDR only the LISTENERS open to the caller
    (SSH and the signed agent port; never Disco's unauthenticated job API)."""
    rules: list[dict[str, Any]] = [{
        "IpProtocol": "-1",
        "UserIdGroupPairs": [{"GroupId": group_id, "Description": "cluster members"}],
    }]
    return rules + caller_permissions(cidr)


@dataclass
class CallerRule:
    """An ingress rule of the cluster's group from an address range to a caller port."""

    rule_id: str
    port: int
    cidr: str
    ours: bool  # made by imagebake (its description)


def caller_rules(client: Any, group_id: str) -> list[CallerRule]:
    """The group's ingress rules from address ranges to the ports LISTENERS opens to the
    caller (one paginated DescribeSecurityGroupRules)."""
    out = []
    pages = client.get_paginator("describe_security_group_rules").paginate(
        Filters=[{"Name": "group-id", "Values": [group_id]}])
    for page in pages:
        for rule in page["SecurityGroupRules"]:
            cidr = rule.get("CidrIpv4") or rule.get("CidrIpv6")
            port = rule.get("FromPort")
            if (rule.get("IsEgress") or not cidr or rule.get("IpProtocol") != "tcp"
                    or port not in PUBLIC_PORTS or rule.get("ToPort") != port):
                continue
            out.append(CallerRule(rule["SecurityGroupRuleId"], port, cidr,
                                  rule.get("Description") == CALLER_RULE))
    return out


def replace_caller(client: Any, group_id: str, cidr: str, old_cidr: str | None,
                   tags: list[dict[str, str]]) -> tuple[list[int], list[CallerRule]]:
    """Let CIDR reach the caller ports, then revoke the rules it replaces: imagebake's own
    caller rules and OLD_CIDR's (a rule someone added by hand for another range stays).
    The new rules come first, so access never lapses between the two calls. Returns
    (ports newly opened to CIDR, rules revoked)."""
    rules = caller_rules(client, group_id)
    have = {r.port for r in rules if r.cidr == cidr}
    added = [p for p in PUBLIC_PORTS if p not in have]
    if added:
        client.authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=caller_permissions(cidr, tuple(added)),
            TagSpecifications=[{"ResourceType": "security-group-rule", "Tags": tags}])
    replaced = [r for r in rules if r.cidr != cidr and (r.ours or r.cidr == old_cidr)]
    if replaced:
        client.revoke_security_group_ingress(
            GroupId=group_id, SecurityGroupRuleIds=[r.rule_id for r in replaced])
    return added, replaced


def allows(allowed: str | None, address: str) -> bool:
    """Whether the range ALLOWED (a CIDR) holds ADDRESS (an address or /32, /128)."""
    if not allowed:
        return False
    try:
        host = ipaddress.ip_network(address, strict=False).network_address
        return host in ipaddress.ip_network(allowed, strict=False)
    except (ValueError, TypeError):
        return False


def group_name(cluster: str) -> str:
    return f"imagebake-{cluster}"


def create_group(client: Any, cluster: str, vpc: str, cidr: str,
                 tags: list[dict[str, str]]) -> str:
    """The cluster's security group, tagged at creation; default egress is kept."""
    group_id = client.create_security_group(
        GroupName=group_name(cluster), VpcId=vpc,
        Description=f"imagebake cluster {cluster}: members, and "
                    f"{'/'.join(str(p) for p in PUBLIC_PORTS)} from {cidr}",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
    )["GroupId"]
    client.authorize_security_group_ingress(
        GroupId=group_id, IpPermissions=ingress_rules(group_id, cidr),
        TagSpecifications=[{"ResourceType": "security-group-rule", "Tags": tags}],
    )
    return group_id


def placement_group_name(cluster: str) -> str:
    return f"imagebake-{cluster}"


def create_placement_group(client: Any, cluster: str, tags: list[dict[str, str]]) -> str:
    name = placement_group_name(cluster)
    client.create_placement_group(
        GroupName=name, Strategy="cluster",
        TagSpecifications=[{"ResourceType": "placement-group", "Tags": tags}])
    return name
