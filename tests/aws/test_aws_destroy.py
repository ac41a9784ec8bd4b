"""destroy removes everything a launch made, the local files included, with or without
the local record (moto's server; placement groups answered by a before-call hook)."""

from __future__ import annotations

from imagebake import state
from imagebake.targets.aws.cluster import AwsTarget
from imagebake.targets.aws.hostkeys import known_hosts_path

from .aws_helpers import tagged
from .test_aws_launch import HOST_KEY, launch, ready_stub

NOTHING = {"instances": [], "groups": [], "spot": []}


def state_owner() -> str:
    """The owner tag of the test's principal (moto's default caller)."""
    import boto3

    return boto3.client("sts", region_name="us-east-1").get_caller_identity()["Arn"]


def test_destroy_removes_the_pinned_host_keys(amis, ec2):
    record = launch(slaves=1, wait=True, readiness=ready_stub(None))
    path = known_hosts_path("c1")
    assert HOST_KEY.split()[1] in path.read_text()
    AwsTarget().destroy("c1", record)
    assert not path.exists()
    assert state.load("c1") is None and tagged(ec2, "c1") == NOTHING


def test_destroy_without_a_record_removes_the_pinned_host_keys(amis, ec2):
    launch(slaves=1, wait=True, readiness=ready_stub(None))
    state.remove("c1")
    assert known_hosts_path("c1").exists()
    AwsTarget().destroy("c1", None)
    assert not known_hosts_path("c1").exists() and tagged(ec2, "c1") == NOTHING


def test_destroy_without_a_record_finds_the_placement_group_by_tag(amis, ec2, calls):
    calls.answer["CreatePlacementGroup"] = {}
    calls.answer["DeletePlacementGroup"] = {}
    calls.answer["DescribePlacementGroups"] = {"PlacementGroups": [
        {"GroupName": "imagebake-c1", "Strategy": "cluster", "State": "available"}]}
    launch(calls, placement_group=True, slaves=1, instance_type="c5.large")
    state.remove("c1")  # the record (which names the group) is lost
    message = AwsTarget(session_factory=calls.factory).destroy("c1", None)
    searched = calls.named("DescribePlacementGroups")
    assert searched and {"Name": "tag:imagebake:cluster", "Values": ["c1"]} in \
        searched[0]["Filters"]
    assert {"Name": "tag:owner", "Values": [state_owner()]} in searched[0]["Filters"]
    assert [p["GroupName"] for p in calls.named("DeletePlacementGroup")] == ["imagebake-c1"]
    assert "placement group imagebake-c1 deleted" in message
    assert tagged(ec2, "c1") == NOTHING


def test_destroy_with_a_record_deletes_its_placement_group_without_searching(amis, calls):
    calls.answer["CreatePlacementGroup"] = {}
    calls.answer["DeletePlacementGroup"] = {}
    record = launch(calls, placement_group=True, slaves=1, instance_type="c5.large")
    AwsTarget(session_factory=calls.factory).destroy("c1", record)
    assert not calls.named("DescribePlacementGroups")
    assert [p["GroupName"] for p in calls.named("DeletePlacementGroup")] == ["imagebake-c1"]


def test_destroy_terminates_cancels_and_deletes_in_few_calls(amis, ec2, calls):
    record = launch(slaves=5)
    message = AwsTarget(session_factory=calls.factory).destroy("c1", record)
    assert "6 instance(s) terminated" in message and "security group" in message
    terminate = calls.named("TerminateInstances")
    assert len(terminate) == 1 and len(terminate[0]["InstanceIds"]) == 6  # one call for all
    assert len(calls.named("DeleteSecurityGroup")) == 1
    assert calls.named("DescribeSpotInstanceRequests")  # spot requests are looked for
    assert tagged(ec2, "c1") == NOTHING


# ------------------------------------------------------------------ no record, no --target
def _cli_env(aws_env):
    import os

    return {**os.environ, **aws_env}


def test_destroy_without_a_record_or_target_searches_aws_by_tag(amis, ec2, aws_env):
    from .test_aws_cli import invoke

    launch(slaves=2)
    state.remove("c1")  # the record is lost; `invoke destroy --name c1` alone must do
    result = invoke(_cli_env(aws_env), "destroy", "--name", "c1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("destroyed c1 in us-east-1: 3 instance(s) terminated")
    assert tagged(ec2, "c1") == NOTHING


def test_destroy_without_a_record_and_without_credentials_says_so(amis, ec2, aws_env):
    from .test_aws_cli import invoke

    launch(slaves=1)
    state.remove("c1")
    env = _cli_env(aws_env)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(var)
    result = invoke(env, "destroy", "--name", "c1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "nothing to destroy: no cluster named 'c1' recorded, and AWS not searched (no AWS "
        "credentials found: run `aws configure` or set AWS_PROFILE; or pass --target)"]
    assert len(tagged(ec2, "c1")["instances"]) == 2  # untouched
