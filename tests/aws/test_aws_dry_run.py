"""`invoke launch --dry-run`: every creating call sent with DryRun=True, the permissions
present and missing printed, nothing created. moto's server answers every DryRun call
with DryRunOperation (never UnauthorizedOperation, and a 500 for CreatePlacementGroup),
so a missing permission is AWS's answer injected by a before-call hook."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagebake import state
from imagebake.targets.aws.cluster import AwsTarget
from imagebake.targets.base import Target

from .aws_helpers import client_error, tagged
from .test_aws_cli import invoke
from .test_aws_launch import CIDR

NOTHING = {"instances": [], "groups": [], "spot": []}
CREATING = ("CreateSecurityGroup", "AuthorizeSecurityGroupIngress", "RunInstances",
            "CreatePlacementGroup", "TerminateInstances", "DeleteSecurityGroup")


def dry_run(calls, **kw):
    args = dict(name="c1", slaves=4, allow_cidr=CIDR)
    args.update(kw)
    return AwsTarget(session_factory=calls.factory).dry_run(**args)


def sent_for_real(calls) -> list[str]:
    return [n for n, p in calls.seen if n in CREATING and not p.get("DryRun")]


def test_dry_run_asks_for_every_creating_call_and_creates_nothing(amis, ec2, calls):
    text, ok = dry_run(calls)
    assert ok, text
    runs = calls.named("RunInstances")
    assert [(r["ImageId"], r["MaxCount"]) for r in runs] == [(amis["master"], 1),
                                                              (amis["node"], 4)]
    assert all(r["DryRun"] for r in runs)
    assert all(r["TagSpecifications"] for r in runs)  # the tag-on-create permission too
    for op in ("CreateSecurityGroup", "AuthorizeSecurityGroupIngress",
               "TerminateInstances", "DeleteSecurityGroup"):
        assert [p["DryRun"] for p in calls.named(op)] == [True], op
    assert not calls.named("CreatePlacementGroup")  # not asked for
    assert sent_for_real(calls) == []
    for line in ("allowed  CreateSecurityGroup", "allowed  RunInstances",
                 "master x1", "node x4", "nothing created"):
        assert line in text, (line, text)
    assert "every checked permission is present" in text
    assert tagged(ec2, "c1") == NOTHING and state.load("c1") is None


def test_dry_run_reports_a_missing_permission(amis, ec2, calls):
    calls.fail[("RunInstances", 2)] = client_error("UnauthorizedOperation")
    text, ok = dry_run(calls)
    assert not ok
    node_line = next(ln for ln in text.splitlines() if "node x4" in ln)
    assert node_line.split()[0] == "MISSING" and "UnauthorizedOperation" in node_line
    master_line = next(ln for ln in text.splitlines() if "master x1" in ln)
    assert master_line.split()[0] == "allowed"
    assert "missing: RunInstances" in text
    assert tagged(ec2, "c1") == NOTHING


def test_dry_run_checks_the_placement_group_when_asked(amis, calls):
    # moto answers a DryRun CreatePlacementGroup with a 500; AWS would say DryRunOperation
    calls.fail[("CreatePlacementGroup", 1)] = client_error("DryRunOperation",
                                                           "CreatePlacementGroup")
    text, ok = dry_run(calls, placement_group=True, instance_type="c5.large")
    assert ok and "allowed  CreatePlacementGroup" in text
    assert calls.named("CreatePlacementGroup")[0]["DryRun"] is True


def test_an_error_that_is_no_verdict_is_reported_as_unknown(amis, calls):
    calls.fail[("AuthorizeSecurityGroupIngress", 1)] = client_error(
        "InvalidGroup.NotFound", "AuthorizeSecurityGroupIngress")
    text, ok = dry_run(calls)
    line = next(ln for ln in text.splitlines() if "AuthorizeSecurityGroupIngress" in ln)
    assert line.split()[0] == "unknown" and "InvalidGroup.NotFound" in line
    assert ok  # nothing known to be missing


@pytest.fixture
def cli_env(aws_env, amis):
    return {**os.environ, **aws_env}


def test_cli_dry_run(cli_env, ec2):
    result = invoke(cli_env, "launch", "--dry-run", "--name", "c1", "--slaves", "2",
                    "--allow-cidr", CIDR)
    assert result.returncode == 0, result.stderr
    assert "allowed  RunInstances" in result.stdout and "nothing created" in result.stdout
    assert tagged(ec2, "c1") == NOTHING
    clusters = Path(cli_env["IMAGEBAKE_STATE_DIR"]) / "clusters"
    assert not clusters.is_dir() or not list(clusters.glob("*.json"))  # no record either


def test_cli_dry_run_without_credentials_is_one_line(cli_env, ec2):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        cli_env.pop(var)
    result = invoke(cli_env, "launch", "--dry-run", "--name", "c1", "--allow-cidr", CIDR)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: no AWS credentials found: run `aws configure` or set AWS_PROFILE"]


class _Local(Target):
    """A local target's shape: check_launch makes a plan with names, images, addresses."""

    name = "local"

    def _check_launch(self, name, slaves, workers_per_node, options):
        from types import SimpleNamespace

        return SimpleNamespace(name=name, count=int(slaves), images={"master": "m:1"},
                               addresses={"master": "10.0.0.2"})

    def _launch(self, plan, wait):
        raise AssertionError("a dry run launched")


def test_a_local_dry_run_prints_the_plan_and_launches_nothing():
    text, ok = _Local().dry_run(name="demo", slaves=2)
    assert ok
    assert "master and 2 slave(s) (node01, node02)" in text
    assert "images: {'master': 'm:1'}" in text and "10.0.0.2" in text
    assert "nothing created" in text
