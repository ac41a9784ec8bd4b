"""`invoke acceptance --target aws` against moto's server: the ceiling and the refusal
without --yes, the flow's order and its real EC2 calls (key pair, spot launch, status,
shrink's terminate, destroy, AMI removal), cleanup after a failed step, and a sweep that
finds what is left. What needs a real cluster (Packer, the agent, Disco, the drain) is
handed in as the run's Steps; every EC2 call is a real one to moto."""

from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest

from imagebake import acceptance as A
from imagebake import shrink as S
from imagebake import state
from imagebake.agent import disco_config
from imagebake.agent import spec as agent_spec
from imagebake.errors import ImagebakeError
from imagebake.targets.aws import instances as ec2i
from imagebake.targets.aws import userdata
from tests.fakes import FakeAgent

from .aws_helpers import REGION, register_ami, tagged
from .test_aws_cli import invoke
from .test_aws_launch import instances, ready_stub
from .test_aws_shrink import safe_disco

NAME = "acc"


def plan(tmp_path, keep_amis=False):
    made = A.check("aws", NAME, None, None, keep_amis, str(tmp_path / "report.json"), REGION)
    return A.price(made, boto3.Session(region_name=REGION))


class Fake:
    """The steps a real cluster would take, recording what they were given."""

    def __init__(self, amis, built=("master", "node"), smoke_ok=True):
        self.amis, self.built, self.smoke_ok = amis, list(built), smoke_ok
        self.seen: list[str] = []

    def bake(self, plan):
        self.seen.append("bake")
        return {"built": self.built, "skipped": [r for r in ("master", "node")
                                                 if r not in self.built],
                "images": {r: {"id": self.amis[r]} for r in ("master", "node")}}

    def smoke(self, record):
        self.seen.append("smoke")
        assert len(record["nodes"]) == A.SLAVES and record["spot"] and record["key_name"]
        assert os.stat(record["identity_file"]).st_mode & 0o777 == 0o600
        return self.smoke_ok, "ddfs-load: ...\nsmoke: Disco 2-gram job " + (
            "passed" if self.smoke_ok else "FAILED")

    def shrink(self, target, record):
        self.seen.append("shrink")

        def agent_call(address, port, record, path, msg, reply_type):
            return {"removed": msg["hostnames"], "unknown": []}

        target.agent = FakeAgent(agent_like, agent_call)  # the master agent's signed leave
        return S.shrink(target, record, slaves=1, calls=safe_disco, say=lambda s: None,
                        progress=lambda t, done: None)

    def steps(self):
        return A.Steps(bake=self.bake, agent=FakeAgent(agent_like), smoke=self.smoke,
                       shrink=self.shrink)


def agent_like(address, port, record):
    """The master agent's status reply: every slave joined, and the DDFS replica count
    the agent computes from its spec (expected nodes at launch, so 2 after a grow too)."""
    reply = ready_stub(None)(address, port, record)
    spec = agent_spec.loads(userdata.render(userdata.master_spec(
        record["name"], A.SLAVES, None, None)))
    reply["ddfs_replicas"] = disco_config.replicas(spec, len(record["nodes"]))
    return reply


def nothing_left(ec2, owner):
    return A.sweep(ec2, NAME, owner)


def owner_of(ec2):
    return boto3.client("sts", region_name=REGION).get_caller_identity()["Arn"]


def test_the_whole_run_leaves_nothing_and_reports(amis, ec2, tmp_path):
    fake = Fake(amis)
    lines: list[str] = []
    report = A.run(plan(tmp_path), fake.steps(), say=lines.append)
    assert report["ok"], report["failed"]
    assert fake.seen == ["bake", "smoke", "shrink"]
    assert [s["step"] for s in report["steps"]] == [
        "bake", "key pair", "launch", "status", "ddfs-load and smoke job",
        "grow one slave", "shrink one slave", "destroy", "remove the key pair",
        "remove the baked AMIs", "sweep"]
    assert all(s["ok"] and s["seconds"] >= 0 for s in report["steps"])
    calls = report["ec2_calls"]
    assert calls["RunInstances"] == 3 and calls["ImportKeyPair"] == 1  # master, 2, grow 1
    assert calls["TerminateInstances"] == 2  # shrink's one slave, then destroy's rest
    assert calls["DeleteKeyPair"] == 1 and calls["DeregisterImage"] == 2
    assert report["ec2_calls_total"] == sum(calls.values())
    assert report["left"] == {"instances": [], "volumes": [], "security_groups": [],
                              "key_pairs": [], "spot_requests": [], "amis": []}
    assert report["cost_estimate"]["slave_spot_usd_per_hour"] is not None
    assert json.loads((tmp_path / "report.json").read_text()) == report
    # on EC2: the slaves were spot, the master on demand, all gone now
    launched = [i for r in ec2.describe_instances(Filters=[ec2i.cluster_filter(NAME)])[
        "Reservations"] for i in r["Instances"]]
    assert sorted(i.get("InstanceLifecycle", "on-demand") for i in launched) == [
        "on-demand", "spot", "spot", "spot"]
    assert {i["State"]["Name"] for i in launched} == {"terminated"}
    assert not ec2.describe_images(Owners=["self"], ImageIds=[])["Images"] or all(
        i["ImageId"] not in amis.values()
        for i in ec2.describe_images(Owners=["self"])["Images"])
    assert not ec2.describe_key_pairs()["KeyPairs"]
    assert state.load(NAME) is None
    assert any("shrink one slave done" in line for line in lines)


def test_keep_amis_and_reused_amis_stay(amis, ec2, tmp_path):
    kept = A.run(plan(tmp_path, keep_amis=True), Fake(amis).steps(), say=lambda s: None)
    assert kept["ok"] and kept["amis"]["kept"] is True
    reused = A.run(plan(tmp_path), Fake(amis, built=()).steps(), say=lambda s: None)
    assert reused["ok"] and reused["amis"]["reused"] == sorted(amis.values())
    assert "remove the baked AMIs" not in [s["step"] for s in reused["steps"]]
    ids = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    assert set(amis.values()) <= ids


def test_a_failed_smoke_still_cleans_up_everything(amis, ec2, tmp_path):
    fake = Fake(amis, smoke_ok=False)
    report = A.run(plan(tmp_path), fake.steps(), say=lambda s: None)
    assert not report["ok"]
    assert report["failed"] == "smoke: Disco 2-gram job FAILED"
    assert "shrink" not in fake.seen
    steps = {s["step"]: s["ok"] for s in report["steps"]}
    assert steps["ddfs-load and smoke job"] is False
    assert steps["destroy"] and steps["sweep"]
    assert not any(report["left"].values())
    assert tagged(ec2, NAME) == {"instances": [], "groups": [], "spot": []}


def test_an_interrupt_during_launch_still_cleans_up(amis, ec2, tmp_path):
    fake = Fake(amis)
    steps = fake.steps()

    def interrupted(address, port, record):
        raise KeyboardInterrupt

    steps.agent = FakeAgent(interrupted)
    report = A.run(plan(tmp_path), steps, say=lambda s: None)
    assert not report["ok"] and "interrupted" in report["failed"]
    assert not any(report["left"].values())
    assert not ec2.describe_key_pairs()["KeyPairs"]


def test_the_sweep_finds_what_is_left(amis, ec2, aws_env, tmp_path):
    owner = owner_of(ec2)
    tags = ec2i.tag_list(NAME, "node", owner, "now", "1h")
    ec2.run_instances(ImageId=amis["node"], MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": t, "Tags": tags} for t in ("instance", "volume")])
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "k")], check=True)
    ec2.import_key_pair(KeyName="imagebake-acc",
                        PublicKeyMaterial=(tmp_path / "k.pub").read_bytes(),
                        TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags}])
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    ec2.create_security_group(GroupName="imagebake-acc", Description="left", VpcId=vpc,
                              TagSpecifications=[{"ResourceType": "security-group",
                                                  "Tags": tags}])
    left = A.sweep(ec2, NAME, owner, {amis["node"]})
    assert len(left["instances"]) == 1 and len(left["volumes"]) == 1
    assert left["key_pairs"] == ["imagebake-acc"] and len(left["security_groups"]) == 1
    assert left["amis"] == [amis["node"]]
    # another principal's resources of the same name are not ours to report
    assert not any(A.sweep(ec2, NAME, "arn:aws:iam::123456789012:user/other").values())


def test_a_sweep_that_finds_something_fails_the_run(amis, ec2, tmp_path):
    fake = Fake(amis)
    steps = fake.steps()

    def smoke_and_leave_a_volume(record):
        # something the destroy does not know about, tagged like the cluster
        ec2.create_volume(AvailabilityZone=record["az"], Size=1, TagSpecifications=[{
            "ResourceType": "volume",
            "Tags": ec2i.tag_list(NAME, "node", record["owner"], "now", "1h")}])
        return fake.smoke(record)

    steps.smoke = smoke_and_leave_a_volume
    report = A.run(plan(tmp_path), steps, say=lambda s: None)
    assert not report["ok"] and "the sweep found LEFT: volumes vol-" in report["failed"]
    assert len(report["left"]["volumes"]) == 1


def test_ceiling_names_types_count_hours_and_region(amis, tmp_path):
    text = A.ceiling(plan(tmp_path))
    assert f"cluster {NAME} in {REGION}" in text
    assert "1 x t2.medium on demand  <= 1 h" in text
    assert "2 (+1 grown, then 1 shrunk) x t2.medium spot" in text and "$" in text
    assert "powers the cluster off 1h after launch" in text


def test_an_existing_record_of_the_name_is_refused_before_anything(amis, ec2, tmp_path):
    state.save({"name": NAME, "target": "aws", "region": REGION, "nodes": []})
    fake = Fake(amis)
    with pytest.raises(ImagebakeError, match="already recorded"):
        A.run(plan(tmp_path), fake.steps(), say=lambda s: None)
    assert fake.seen == [] and not ec2.describe_key_pairs()["KeyPairs"]


# ------------------------------------------------------------------ the CLI
@pytest.fixture
def cli_env(aws_env, amis):
    env = dict(os.environ)
    env.update(aws_env)
    return env


def test_without_yes_it_prints_the_ceiling_and_spends_nothing(cli_env, ec2, calls):
    result = invoke(cli_env, "acceptance", "--target", "aws")
    assert result.returncode == 2, result.stderr
    assert "x t2.medium spot" in result.stdout and "1 h" in result.stdout
    assert result.stderr.splitlines() == [
        "error: nothing done: pass --yes to spend what is above"]
    assert not ec2.describe_key_pairs()["KeyPairs"]
    assert tagged(ec2, "acceptance") == {"instances": [], "groups": [], "spot": []}


@pytest.mark.parametrize("args,expected", [
    (["--target", "docker"], "acceptance runs on --target aws only"),
    (["--instance-type", "huge"], "--instance-type 'huge' is not an instance type"),
    (["--name", "Bad_Name"], "invalid cluster name"),
])
def test_bad_input_is_one_line(cli_env, args, expected):
    result = invoke(cli_env, "acceptance", "--yes", *args)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert expected in line


def test_moto_keeps_terminated_volumes_away(amis, ec2):
    """The sweep's volume check means something only if a terminated instance's root
    volume goes: moto deletes it as EC2 does (DeleteOnTermination)."""
    image = register_ami(ec2, "node", name="vol-check")
    owner = owner_of(ec2)
    tags = ec2i.tag_list("vol", "node", owner, "now", "1h")
    (inst,) = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": t, "Tags": tags} for t in ("instance", "volume")])["Instances"]
    assert A.sweep(ec2, "vol", owner)["volumes"]
    ec2i.terminate(ec2, [inst["InstanceId"]])
    assert A.sweep(ec2, "vol", owner)["volumes"] == []
    assert instances(ec2, [inst["InstanceId"]])[0]["State"]["Name"] == "terminated"


def test_every_call_of_the_run_is_granted_by_the_policies_it_names(amis, tmp_path):
    from pathlib import Path

    report = A.run(plan(tmp_path), Fake(amis).steps(), say=lambda s: None)
    assert report["ok"], report["failed"]
    granted = set()
    for name in ("launch-policy.json", "bake-policy.json", "acceptance-policy.json"):
        doc = json.loads((Path(__file__).resolve().parents[2] / "iam" / name).read_text())
        for statement in doc["Statement"]:
            if statement["Effect"] == "Allow":
                actions = statement["Action"]
                granted.update([actions] if isinstance(actions, str) else actions)
    assert "ec2:ImportKeyPair" in granted and "ec2:DescribeVolumes" in granted
    assert sorted(f"ec2:{c}" for c in report["ec2_calls"] if f"ec2:{c}" not in granted) == []
