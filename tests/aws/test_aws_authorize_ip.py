"""`invoke authorize-ip`: the cluster's security group follows the caller's address (moto's
server; the fake checkip answers 1.2.3.4), the replaced rule goes, and `status` warns when
the caller's address is not let in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagebake import state
from imagebake.report import render_status
from imagebake.targets.aws.cluster import AwsTarget

from .aws_helpers import REGION
from .test_aws_cli import invoke
from .test_aws_launch import CIDR, launch

CALLER = "1.2.3.4/32"  # tests/aws/conftest.py's checkip answer


def ranges(ec2, group: str) -> dict[int, set[str]]:
    """{port: CIDRs} of the group's ingress rules from address ranges."""
    perms = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    out: dict[int, set[str]] = {}
    for p in perms:
        for r in p.get("IpRanges", []) + p.get("Ipv6Ranges", []):
            out.setdefault(p.get("FromPort", -1), set()).add(r.get("CidrIp") or r["CidrIpv6"])
    return out


def members_rule(ec2, group: str) -> list:
    perms = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    return [p for p in perms if p["IpProtocol"] == "-1"]


def test_authorize_ip_moves_the_caller_rules_to_the_current_address(amis, ec2, calls):
    record = launch(slaves=1)
    group = record["security_group"]
    assert ranges(ec2, group) == {22: {CIDR}, 8990: {CIDR}}
    members = members_rule(ec2, group)
    message = AwsTarget(session_factory=calls.factory).authorize_ip(record)
    assert ranges(ec2, group) == {22: {CALLER}, 8990: {CALLER}}  # never Disco's 8989
    assert members_rule(ec2, group) == members  # the members' rule is untouched
    assert CALLER in message and f"removed the rule(s) for {CIDR}" in message
    assert state.load("c1")["allow_cidr"] == CALLER  # recorded
    # the new rules come first (no lapse), tagged at creation; the old go by rule id
    order = [n for n, _ in calls.seen if n in ("AuthorizeSecurityGroupIngress",
                                               "RevokeSecurityGroupIngress")]
    assert order == ["AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress"]
    added = calls.named("AuthorizeSecurityGroupIngress")[0]
    assert {t["Key"] for t in added["TagSpecifications"][0]["Tags"]} >= {
        "imagebake:cluster", "owner"}
    assert len(calls.named("RevokeSecurityGroupIngress")[0]["SecurityGroupRuleIds"]) == 2


def test_authorize_ip_with_a_cidr_keeps_rules_added_by_hand(amis, ec2):
    record = launch(slaves=1)
    group = record["security_group"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
        "IpRanges": [{"CidrIp": "198.51.100.0/24", "Description": "office"}]}])
    AwsTarget().authorize_ip(record, "192.0.2.8/32")
    assert ranges(ec2, group) == {22: {"192.0.2.8/32", "198.51.100.0/24"},
                                  8990: {"192.0.2.8/32"}}


def test_authorize_ip_twice_changes_nothing(amis, ec2, calls):
    record = launch(slaves=1, allow_cidr=None)  # already the caller's address
    message = AwsTarget(session_factory=calls.factory).authorize_ip(record)
    assert "no change" in message
    assert not calls.named("AuthorizeSecurityGroupIngress")
    assert not calls.named("RevokeSecurityGroupIngress")
    assert ranges(ec2, record["security_group"]) == {22: {CALLER}, 8990: {CALLER}}


def test_status_warns_until_the_callers_address_is_allowed(amis, ec2):
    record = launch(slaves=1)
    report = AwsTarget().status(record)
    assert any("1.2.3.4 is not allowed" in w and "authorize-ip --name c1" in w
               for w in report.get("warnings", [])), report.get("warnings")
    assert "warning: your address 1.2.3.4" in render_status(report)
    AwsTarget().authorize_ip(state.load("c1"))
    assert not AwsTarget().status(state.load("c1")).get("warnings")


@pytest.fixture
def cli_env(aws_env, amis):
    import os

    return {**os.environ, **aws_env}


BAD = {
    "not-a-cidr": (["--cidr", "300.1.2.3/32"], "not a CIDR"),
    "host-bits": (["--cidr", "10.1.2.3/8"], "host bits"),
    "world-without-flag": (["--cidr", "0.0.0.0/0"], "--allow-world"),
    "world-v6-without-flag": (["--cidr", "::/0"], "--allow-world"),
    "half-world-without-flag": (["--cidr", "0.0.0.0/1"], "--allow-world"),
    "wider-than-8-without-flag": (["--cidr", "8.0.0.0/7"], "--allow-world"),
    "implicit-world": (["--cidr", "1.2.3.4/0"], "every address"),
    "allow-world-alone": (["--allow-world"], "--cidr 0.0.0.0/0"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_authorize_ip_input_is_one_line_and_changes_nothing(cli_env, ec2, case):
    record = launch(slaves=1)
    before = ranges(ec2, record["security_group"])
    args, expected = BAD[case]
    result = invoke(cli_env, "authorize-ip", "--name", "c1", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1 and expected in result.stderr, result.stderr
    assert ranges(ec2, record["security_group"]) == before
    assert state.load("c1")["allow_cidr"] == CIDR


def test_the_world_needs_allow_world(cli_env, ec2):
    record = launch(slaves=1)
    result = invoke(cli_env, "authorize-ip", "--name", "c1", "--cidr", "0.0.0.0/0",
                    "--allow-world")
    assert result.returncode == 0, result.stderr
    assert ranges(ec2, record["security_group"]) == {22: {"0.0.0.0/0"}, 8990: {"0.0.0.0/0"}}


def test_authorize_ip_does_not_apply_to_local_targets(cli_env):
    clusters = Path(cli_env["IMAGEBAKE_STATE_DIR"]) / "clusters"
    clusters.mkdir(parents=True)
    (clusters / "loc.json").write_text(json.dumps({"name": "loc", "target": "docker",
                                                   "region": REGION, "nodes": []}))
    result = invoke(cli_env, "authorize-ip", "--name", "loc")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: authorize-ip does not apply to the docker target: its cluster has no "
        "security group (only --target aws has one)"]


def test_the_launch_policy_allows_authorize_ip_on_owned_groups_only():
    policy = json.loads((Path(__file__).resolve().parents[2] / "iam" /
                         "launch-policy.json").read_text())
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert "ec2:DescribeSecurityGroupRules" in by_sid["ReadOnlyLookups"]["Action"]
    manage = by_sid["ManageOnlyOurResources"]
    assert "ec2:RevokeSecurityGroupIngress" in manage["Action"]
    assert manage["Condition"]["StringEquals"] == {"aws:ResourceTag/owner": "${aws:PrincipalArn}"}
