"""Bad input through the real CLI (`invoke launch ...` in a subprocess, moto env):
exit code 2, exactly one line on stderr, nothing created."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from .aws_helpers import REGION, register_ami, tagged

REPO = Path(__file__).resolve().parents[2]
GOOD_CIDR = ["--allow-cidr", "203.0.113.7/32"]


def invoke(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli_env(aws_env, amis):
    import os

    env = dict(os.environ)
    env.update(aws_env)
    return env


def _wrong_region_subnet(ec2, env):
    west = boto3.client("ec2", region_name="us-west-2")
    vpc = west.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = west.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    return ["--subnet", subnet]


def _record_exists(ec2, env):
    clusters = Path(env["IMAGEBAKE_STATE_DIR"]) / "clusters"
    clusters.mkdir(parents=True)
    (clusters / "bad.json").write_text(json.dumps({"name": "bad", "target": "aws",
                                                   "region": REGION}))
    return []


def _tagged_instances_exist(ec2, env):
    """Instances of a cluster "bad" of the caller's (owner tag as a launch writes it)."""
    me = boto3.client("sts", region_name=REGION).get_caller_identity()["Arn"]
    node = json.loads(Path(env["IMAGEBAKE_IMAGES_JSON"]).read_text())["aws"]["node"]["id"]
    ec2.run_instances(ImageId=node, MinCount=1, MaxCount=1, TagSpecifications=[{
        "ResourceType": "instance", "Tags": [{"Key": "imagebake:cluster", "Value": "bad"},
                                             {"Key": "owner", "Value": me}]}])
    return []


def _group_of_another_principal(ec2, env):
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    ec2.create_security_group(
        GroupName="imagebake-bad", Description="theirs", VpcId=vpc["VpcId"],
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [
            {"Key": "imagebake:cluster", "Value": "bad"},
            {"Key": "owner", "Value": "arn:aws:iam::123456789012:user/other"}]}])
    return []


def _no_images_json(ec2, env):
    Path(env["IMAGEBAKE_IMAGES_JSON"]).unlink()
    return []


def _images_from_other_region(ec2, env):
    path = Path(env["IMAGEBAKE_IMAGES_JSON"])
    data = json.loads(path.read_text())
    data["aws"]["master"]["region"] = "eu-west-3"
    path.write_text(json.dumps(data))
    return []


def _wrong_role(ec2, env):
    node = json.loads(Path(env["IMAGEBAKE_IMAGES_JSON"]).read_text())["aws"]["node"]["id"]
    return ["--master-ami", node, "--node-ami", node]


def _untagged_ami(ec2, env):
    image = register_ami(ec2, "master")
    ec2.delete_tags(Resources=[image], Tags=[{"Key": "imagebake:role"}])
    node = json.loads(Path(env["IMAGEBAKE_IMAGES_JSON"]).read_text())["aws"]["node"]["id"]
    return ["--master-ami", image, "--node-ami", node]


def _no_credentials(ec2, env):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(var, None)
    return []


def _no_checkip(ec2, env):
    env["IMAGEBAKE_CHECKIP_URL"] = "http://127.0.0.1:9/"  # nothing listens: refused
    return ["--no-allow-cidr"]


def _subnet_in_zone(zone):
    def setup(ec2, env):
        subnets = ec2.describe_subnets(Filters=[
            {"Name": "default-for-az", "Values": ["true"]},
            {"Name": "availability-zone", "Values": [zone]}])["Subnets"]
        return ["--subnet", subnets[0]["SubnetId"]]

    return setup


CASES = {
    "slaves-zero": (["--slaves", "0"], None, "--slaves"),
    "slaves-negative": (["--slaves", "-1"], None, "--slaves"),
    "slaves-text": (["--slaves", "abc"], None, "--slaves"),
    "slaves-huge": (["--slaves", "10000"], None, "--slaves"),
    "workers-zero": (["--workers-per-node", "0"], None, "--workers-per-node"),
    "unknown-region": (["--region", "xx-fake-1"], None, "unknown region"),
    "malformed-region": (["--region", "Mars"], None, "unknown region"),
    "missing-ami": ([], _no_images_json, "invoke bake --target aws"),
    "ami-other-region": ([], _images_from_other_region, "baked in eu-west-3"),
    "unknown-ami": (["--master-ami", "ami-0123456789abcdef0"], None, "not found"),
    "malformed-ami": (["--node-ami", "my-ami"], None, "ami-"),
    "ami-wrong-role": ([], _wrong_role, "not a master image"),
    "ami-untagged": ([], _untagged_ami, "not tagged imagebake:role"),
    "bad-instance-type": (["--instance-type", "t9.bogus"], None, "unknown instance type"),
    "malformed-instance-type": (["--master-instance-type", "huge"], None, "instance type"),
    "bad-cidr": (["--allow-cidr", "300.1.2.3/32"], None, "not a CIDR"),
    "cidr-host-bits": (["--allow-cidr", "10.1.2.3/8"], None, "host bits"),
    "cidr-implicit-world": (["--allow-cidr", "1.2.3.4/0"], None, "every address"),
    "cidr-world-without-flag": (["--allow-cidr", "0.0.0.0/0"], None, "--allow-world"),
    "cidr-half-world-without-flag": (["--allow-cidr", "128.0.0.0/1"], None, "--allow-world"),
    "allow-world-with-narrow-cidr": (["--allow-world"], None, "--allow-world"),
    "no-caller-address": ([], _no_checkip, "--allow-cidr"),
    "ttl-no-unit": (["--ttl", "4"], None, "--ttl"),
    "ttl-bad-unit": (["--ttl", "4w"], None, "--ttl"),
    "ttl-fraction": (["--ttl", "1.5h"], None, "--ttl"),
    "ttl-zero": (["--ttl", "0h"], None, "out of range"),
    "ttl-too-long": (["--ttl", "31d"], None, "out of range"),
    "name-invalid": (["--name", "Bad_Name"], None, "invalid cluster name"),
    "name-recorded": ([], _record_exists, "already recorded"),
    "name-tagged-instances": ([], _tagged_instances_exist, "invoke destroy"),
    "name-of-another-principal": ([], _group_of_another_principal, "another principal"),
    "no-credentials": ([], _no_credentials, "no AWS credentials found"),
    "unknown-profile": (["--profile", "nope"], None, "profile 'nope' not found"),
    "unknown-key-pair": (["--key-name", "nope"], None, "key pair 'nope' not found"),
    "unknown-subnet": (["--subnet", "subnet-0123456789abcdef0"], None, "not found"),
    "subnet-other-region": ([], _wrong_region_subnet, "not found in us-east-1"),
    "malformed-subnet": (["--subnet", "default"], None, "subnet-"),
    "spot-master-without-spot": (["--spot-master"], None, "--spot-master goes with --spot"),
    "spot-placement-group-type": (["--spot", "--placement-group"], None,
                                  "t2.medium (master) cannot join"),
    "spot-type-not-sold-as-spot": (["--spot", "--instance-type", "hpc6a.48xlarge"],
                                   _subnet_in_zone("us-east-1a"), "not sold as spot"),
    "spot-region-without-type": (["--spot", "--instance-type", "dl2q.24xlarge"],
                                 _subnet_in_zone("us-east-1a"),
                                 "spot offers no dl2q.24xlarge in us-east-1a"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_launch_input(cli_env, ec2, case):
    args, setup, expected = CASES[case]
    extra = setup(ec2, cli_env) if setup else []
    before = tagged(ec2, "bad")
    flags = ["launch", "--no-wait"] + ([] if "--name" in args else ["--name", "bad"])
    if "--no-allow-cidr" in extra:
        extra = [a for a in extra if a != "--no-allow-cidr"]
    elif "--allow-cidr" not in args:
        flags += GOOD_CIDR
    result = invoke(cli_env, *flags, *args, *extra)
    assert result.returncode == 2, result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0], lines[0]
    after = tagged(ec2, "bad")
    assert len(after["instances"]) == len(before["instances"])
    assert after["groups"] == before["groups"] and after["spot"] == []  # nothing created
    clusters = Path(cli_env["IMAGEBAKE_STATE_DIR"]) / "clusters"
    recorded = sorted(p.name for p in clusters.glob("*.json")) if clusters.is_dir() else []
    assert recorded == (["bad.json"] if case == "name-recorded" else [])


@pytest.mark.parametrize("task", [["status"], ["grow", "--slaves", "2"], ["ssh"], ["tunnel"]])
def test_unknown_cluster(cli_env, task):
    result = invoke(cli_env, *task, "--name", "ghost")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: no cluster named 'ghost' (known: none)"]


@pytest.mark.parametrize("target", [[], ["--target", "aws"]])
def test_destroy_unknown_cluster_is_fine(cli_env, target):
    result = invoke(cli_env, "destroy", "--name", "ghost", *target)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nothing to destroy")


def test_launch_status_destroy_through_the_cli(cli_env, ec2):
    result = invoke(cli_env, "launch", "--name", "cli", "--slaves", "2", "--no-wait",
                    *GOOD_CIDR)
    assert result.returncode == 0, result.stderr
    assert "cluster cli (aws us-east-1" in result.stdout
    status = invoke(cli_env, "status", "--name", "cli", "--json")
    assert status.returncode == 1  # no agent answers in moto: not ready
    report = json.loads(status.stdout)
    assert report["master"]["state"] == "running" and len(report["nodes"]) == 2
    gone = invoke(cli_env, "destroy", "--name", "cli")
    assert gone.returncode == 0 and "3 instance(s) terminated" in gone.stdout
    again = invoke(cli_env, "destroy", "--name", "cli", "--target", "aws")
    assert again.returncode == 0 and again.stdout.startswith("nothing to destroy")
    assert tagged(ec2, "cli") == {"instances": [], "groups": [], "spot": []}
