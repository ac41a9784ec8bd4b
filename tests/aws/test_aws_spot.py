"""Spot on AWS against moto's server: `--spot` puts the slaves on spot and keeps the master
on demand, `--spot-master` adds the master; a spot capacity refusal is one line naming the
zone and the type, with nothing left; combinations spot cannot satisfy are refused before
anything is created. moto fulfils every spot RunInstances, so AWS's refusals are injected
at the client boundary (the before-call hook the other launch tests use)."""

from __future__ import annotations

import pytest

from imagebake import state
from imagebake.errors import ImagebakeError
from imagebake.targets.aws.cluster import AwsTarget

from .aws_helpers import client_error, tagged
from .test_aws_launch import CIDR, instances, launch

NOTHING = {"instances": [], "groups": [], "spot": []}
CREATING = ("CreateSecurityGroup", "CreatePlacementGroup", "RunInstances")


def market(params: dict) -> str | None:
    return (params.get("InstanceMarketOptions") or {}).get("MarketType")


def tag_types(params: dict) -> set[str]:
    return {t["ResourceType"] for t in params["TagSpecifications"]}


def default_subnet(ec2, zone: str) -> str:
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]},
                                            {"Name": "availability-zone",
                                             "Values": [zone]}])["Subnets"]
    return subnets[0]["SubnetId"]


def test_spot_puts_the_slaves_on_spot_and_keeps_the_master_on_demand(amis, ec2, calls):
    record = launch(calls, spot=True, slaves=3)
    master_run, node_run = calls.named("RunInstances")
    assert market(master_run) is None
    assert "spot-instances-request" not in tag_types(master_run)
    assert market(node_run) == "spot"
    assert node_run["InstanceMarketOptions"]["SpotOptions"] == {
        "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
    assert "spot-instances-request" in tag_types(node_run)
    found = {i["InstanceId"]: i for i in instances(ec2, record["ids"])}
    assert found[record["master"]["id"]].get("InstanceLifecycle") != "spot"
    assert all(found[n["id"]].get("InstanceLifecycle") == "spot" for n in record["nodes"])
    assert (record["spot"], record["spot_master"]) == (True, False)
    assert "its interruption ends the cluster" not in AwsTarget().summary(record)


def test_spot_master_puts_the_master_on_spot_too(amis, ec2, calls):
    record = launch(calls, spot=True, spot_master=True, slaves=2)
    assert [market(p) for p in calls.named("RunInstances")] == ["spot", "spot"]
    assert all(i.get("InstanceLifecycle") == "spot" for i in instances(ec2, record["ids"]))
    assert "its interruption ends the cluster" in AwsTarget().summary(record)


def test_without_spot_nothing_is_spot(amis, calls):
    launch(calls, slaves=2)
    assert [market(p) for p in calls.named("RunInstances")] == [None, None]


def test_grow_adds_spot_slaves_to_a_spot_cluster(amis, ec2, calls):
    record = launch(spot=True, slaves=1)
    grown = AwsTarget(session_factory=calls.factory).grow(record, 2)
    (run,) = calls.named("RunInstances")
    assert market(run) == "spot"
    new = [n["id"] for n in grown["nodes"][1:]]
    assert all(i.get("InstanceLifecycle") == "spot" for i in instances(ec2, new))


@pytest.mark.parametrize("code", ["InsufficientInstanceCapacity",
                                  "MaxSpotInstanceCountExceeded", "SpotMaxPriceTooLow"])
def test_spot_refusal_for_the_slaves_names_zone_and_type_and_leaves_nothing(
        amis, ec2, calls, code):
    calls.fail[("RunInstances", 2)] = client_error(code, message="no spot for you")
    with pytest.raises(ImagebakeError) as err:
        launch(calls, spot=True, slaves=4, instance_type="c5.large",
               master_instance_type="m5.large")
    message = str(err.value)
    assert "\n" not in message
    assert f"spot request refused for c5.large in {record_zone(calls)} ({code}" in message
    assert "removed what was started" in message
    assert calls.named("TerminateInstances")  # the on-demand master went too
    assert tagged(ec2, "c1") == NOTHING
    assert state.load("c1") is None


def test_spot_refusal_for_the_master_names_its_type(amis, ec2, calls):
    calls.fail[("RunInstances", 1)] = client_error("InsufficientInstanceCapacity")
    with pytest.raises(ImagebakeError) as err:
        launch(calls, spot=True, spot_master=True, instance_type="c5.large",
               master_instance_type="m5.large")
    assert f"spot request refused for m5.large in {record_zone(calls)}" in str(err.value)
    assert tagged(ec2, "c1") == NOTHING and state.load("c1") is None


def test_capacity_refusal_of_the_on_demand_master_is_not_called_spot(amis, ec2, calls):
    calls.fail[("RunInstances", 1)] = client_error("InsufficientInstanceCapacity")
    with pytest.raises(ImagebakeError) as err:
        launch(calls, spot=True, master_instance_type="m5.large")
    message = str(err.value)
    assert "spot" not in message
    assert f"AWS has no capacity for m5.large in {record_zone(calls)}" in message
    assert tagged(ec2, "c1") == NOTHING


def record_zone(calls) -> str:
    """The zone the launch chose: the subnet its RunInstances named, as EC2 has it."""
    import boto3

    subnet = calls.named("RunInstances")[0]["NetworkInterfaces"][0]["SubnetId"]
    return boto3.client("ec2").describe_subnets(
        SubnetIds=[subnet])["Subnets"][0]["AvailabilityZone"]


# ------------------------------------------------------------------ refused before anything
def refused(calls, ec2, **kw) -> str:
    with pytest.raises(ImagebakeError) as err:
        launch(calls, **kw)
    message = str(err.value)
    assert "\n" not in message
    assert not [n for n, _ in calls.seen if n in CREATING]
    assert tagged(ec2, "c1") == NOTHING and state.load("c1") is None
    return message


def test_spot_master_without_spot_is_refused(amis, ec2, calls):
    assert "--spot-master goes with --spot" in refused(calls, ec2, spot_master=True)


def test_spot_with_a_placement_group_its_type_cannot_join_is_refused(amis, ec2, calls):
    # t2 (burstable) takes partition and spread placement groups, not `cluster` ones:
    # DescribeInstanceTypes' PlacementGroupInfo, as moto has it from AWS.
    message = refused(calls, ec2, spot=True, placement_group=True,
                      master_instance_type="c5.large", instance_type="t2.medium")
    assert "spot t2.medium (node) cannot join" in message
    assert "partition, spread" in message


def test_a_type_not_sold_as_spot_is_refused(amis, ec2, calls):
    message = refused(calls, ec2, spot=True, instance_type="hpc6a.48xlarge",
                      master_instance_type="c5.large",
                      subnet=default_subnet(ec2, "us-east-1a"))
    assert message.startswith("hpc6a.48xlarge is not sold as spot (on-demand only)")


def test_spot_in_a_zone_without_the_type_is_refused(amis, ec2, calls):
    # c5.12xlarge is offered in us-east-1a but not in us-east-1e (moto's offerings, from AWS)
    message = refused(calls, ec2, spot=True, instance_type="c5.12xlarge",
                      master_instance_type="c5.large",
                      subnet=default_subnet(ec2, "us-east-1e"))
    assert message.startswith("spot offers no c5.12xlarge in us-east-1e (us-east-1)")
    assert calls.named("DescribeSpotPriceHistory")


def test_spot_in_a_region_without_the_type_is_refused(amis, ec2, calls):
    # dl2q.24xlarge exists, but not in us-east-1
    message = refused(calls, ec2, spot=True, instance_type="dl2q.24xlarge",
                      master_instance_type="c5.large",
                      subnet=default_subnet(ec2, "us-east-1a"))
    assert message.startswith("spot offers no dl2q.24xlarge in us-east-1a")


def test_the_on_demand_master_type_is_not_asked_about_spot(amis, ec2, calls):
    # the master is on demand: a master type spot does not sell is fine with --spot
    record = launch(calls, spot=True, slaves=1, instance_type="c5.large",
                    master_instance_type="hpc6a.48xlarge",
                    subnet=default_subnet(ec2, "us-east-1a"), allow_cidr=CIDR)
    assert record["master_instance_type"] == "hpc6a.48xlarge"
    (asked,) = calls.named("DescribeSpotPriceHistory")
    assert asked["InstanceTypes"] == ["c5.large"]


def test_dry_run_asks_for_an_on_demand_master_and_spot_slaves(amis, calls):
    text, ok = AwsTarget(session_factory=calls.factory).dry_run(
        name="c1", slaves=2, allow_cidr=CIDR, spot=True)
    assert ok, text
    master_run, node_run = calls.named("RunInstances")
    assert market(master_run) is None and market(node_run) == "spot"


def test_the_launch_policy_grants_every_call_a_spot_launch_and_destroy_make(amis, calls):
    import json
    from pathlib import Path

    record = launch(calls, spot=True, slaves=2)
    AwsTarget(session_factory=calls.factory).destroy("c1", record)
    policy = json.loads((Path(__file__).resolve().parents[2] / "iam" /
                         "launch-policy.json").read_text())
    granted = set()
    for statement in policy["Statement"]:
        if statement["Effect"] == "Allow":
            actions = statement["Action"]
            granted.update([actions] if isinstance(actions, str) else actions)
    assert "DescribeSpotPriceHistory" in calls.sent
    assert sorted(f"ec2:{name}" for name in set(calls.sent)) == sorted(
        a for a in {f"ec2:{name}" for name in calls.sent} if a in granted)
