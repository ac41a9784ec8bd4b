"""`invoke launch --dry-run` on AWS: every call launch (and its cleanup) makes that changes
something, sent with DryRun=True. EC2 checks the caller's permission and answers
DryRunOperation (it would have succeeded) or UnauthorizedOperation (a permission is
missing); nothing is created. The read-only checks (AMIs, types, subnet, name) already ran
in check_launch.

The cluster's security group does not exist yet, so the RunInstances checks use the VPC's
default group in its place (iam/launch-policy.json grants RunInstances on every group,
so the answer is the same) and leave the placement group out; the checks that need the
group itself (AuthorizeSecurityGroupIngress, DeleteSecurityGroup) name a group id that
does not exist, which EC2 may answer with InvalidGroup.NotFound instead of a verdict:
that is reported as "not checkable before the group exists".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import botocore.exceptions

from ...clients import aws
from . import instances as ec2i
from . import network
from .plan import LaunchPlan

ALLOWED = "allowed"
MISSING = "MISSING"
UNKNOWN = "unknown"
DENIED_CODES = {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"}
NO_GROUP = "sg-00000000000000000"          # placeholder: the group launch would create
NO_INSTANCE = "i-00000000000000000"


@dataclass
class Check:
    call: str
    what: str
    verdict: str = UNKNOWN
    detail: str = ""


def _try(call: Callable[[], Any]) -> tuple[str, str]:
    try:
        call()
    except botocore.exceptions.ClientError as exc:
        code = aws.error_code(exc)
        if code == "DryRunOperation":
            return ALLOWED, ""
        if code in DENIED_CODES:
            return MISSING, code
        return UNKNOWN, f"not checkable before the resources exist ({code})"
    except botocore.exceptions.BotoCoreError as exc:
        return UNKNOWN, aws.one_line(exc)
    # An endpoint that ignores DryRun would have created something: say so loudly.
    return UNKNOWN, "the call succeeded although DryRun was set"


def check_launch(plan: LaunchPlan) -> list[Check]:
    """One DryRun call per kind of call launch makes (a RunInstances per role)."""
    client, name, where = plan.client, plan.name, plan.where
    tags = ec2i.tag_list(name, "cluster", plan.owner, "dry-run", plan.ttl)
    calls: list[tuple[Check, Callable[[], Any]]] = []
    calls.append((Check("CreateSecurityGroup", f"group {network.group_name(name)} in "
                                                f"{where.vpc}"),
                  lambda: client.create_security_group(
                      DryRun=True, GroupName=network.group_name(name), VpcId=where.vpc,
                      Description=f"imagebake cluster {name}",
                      TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}])))
    calls.append((Check("AuthorizeSecurityGroupIngress",
                        f"members + TCP {'/'.join(map(str, network.PUBLIC_PORTS))} from "
                        f"{plan.cidr}"),
                  lambda: client.authorize_security_group_ingress(
                      DryRun=True, GroupId=NO_GROUP,
                      IpPermissions=network.ingress_rules(NO_GROUP, plan.cidr),
                      TagSpecifications=[{"ResourceType": "security-group-rule",
                                          "Tags": tags}])))
    if plan.placement_group:
        calls.append((Check("CreatePlacementGroup",
                            f"cluster placement group {network.placement_group_name(name)}"),
                      lambda: client.create_placement_group(
                          DryRun=True, GroupName=network.placement_group_name(name),
                          Strategy="cluster",
                          TagSpecifications=[{"ResourceType": "placement-group",
                                              "Tags": tags}])))
    for role, itype, count, spot in (("master", plan.master_type, 1, plan.spot_master),
                                     ("node", plan.node_type, plan.count, plan.spot)):
        args = ec2i.run_args(
            ami=plan.amis[role], instance_type=itype, count=count, subnet=where.subnet,
            group=NO_GROUP, user_data='{"dry_run": true}',  # no secrets are made
            imdsv2=False, tags=ec2i.tag_list(name, role, plan.owner, "dry-run", plan.ttl),
            key_name=plan.key_name, spot=spot, placement_group=None)
        del args["NetworkInterfaces"][0]["Groups"]  # the VPC's default group stands in
        calls.append((Check("RunInstances", f"{role} x{count} {itype} {plan.amis[role]}"
                                            f"{' spot' if spot else ''}, tagged"),
                      lambda args=args: client.run_instances(DryRun=True, **args)))
    calls.append((Check("TerminateInstances", "cleanup and destroy"),
                  lambda: client.terminate_instances(DryRun=True,
                                                     InstanceIds=[NO_INSTANCE])))
    calls.append((Check("DeleteSecurityGroup", "cleanup and destroy"),
                  lambda: client.delete_security_group(DryRun=True, GroupId=NO_GROUP)))
    out = []
    for check, call in calls:
        check.verdict, check.detail = _try(call)
        out.append(check)
    return out


def render(plan: LaunchPlan, checks: list[Check]) -> str:
    missing = [c for c in checks if c.verdict == MISSING]
    lines = [f"dry run of launching {plan.name} in {plan.region} ({plan.where.az}, "
             f"{plan.where.subnet}) as {plan.owner}: nothing created"]
    for c in checks:
        lines.append(f"  {c.verdict:<8} {c.call:<30} {c.what}"
                     + (f" [{c.detail}]" if c.detail else ""))
    lines.append("  (CreateTags: every resource is tagged at creation, so the tag permission "
                 "is part of each call's verdict)")
    if missing:
        lines.append(f"  missing: {', '.join(sorted({c.call for c in missing}))}: "
                     "see iam/launch-policy.json")
    else:
        lines.append("  every checked permission is present")
    return "\n".join(lines)
