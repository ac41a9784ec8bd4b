"""`invoke images` / `invoke prune` against moto's server: old AMIs and their
snapshots go, the newest K per role stay, and an AMI a cluster runs is kept."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from imagebake.bake import images

from .aws_helpers import REGION


def bake_amis(ec2, role: str, count: int) -> list[str]:
    """COUNT AMIs of ROLE, oldest first, each with its own EBS snapshot."""
    base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    made = []
    for i in range(count):
        instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1,
                                     InstanceType="t2.micro")["Instances"][0]["InstanceId"]
        ami = ec2.create_image(InstanceId=instance, Name=f"imagebake-{role}-{i}")["ImageId"]
        ec2.create_tags(Resources=[ami], Tags=[{"Key": "imagebake:role", "Value": role},
                                               {"Key": "imagebake:content-hash",
                                                "Value": f"{role}{i:02d}"}])
        ec2.terminate_instances(InstanceIds=[instance])
        made.append(ami)
        time.sleep(1.1)  # CreationDate has one-second resolution
    return made


def snapshots_of(ec2, ami: str) -> list[str]:
    image = ec2.describe_images(ImageIds=[ami])["Images"][0]
    return [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]


def existing_snapshots(ec2) -> set[str]:
    return {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}


def test_list_shows_role_hash_and_date(ec2, aws_env):
    bake_amis(ec2, "master", 1)
    rows = images.list_aws(region=REGION)
    assert [(r["role"], r["content_hash"]) for r in rows] == [("master", "master00")]
    assert rows[0]["created"].endswith("Z")


def test_prune_keeps_newest_per_role_and_removes_snapshots(ec2, aws_env):
    masters, nodes = bake_amis(ec2, "master", 3), bake_amis(ec2, "node", 2)
    old_snaps = snapshots_of(ec2, masters[0])
    assert old_snaps and old_snaps[0] in existing_snapshots(ec2)
    # a running cluster uses masters[1], which --keep 1 would otherwise remove
    ec2.run_instances(ImageId=masters[1], MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "imagebake:cluster", "Value": "live"}]}])
    # an instance outside any imagebake cluster does not keep an AMI
    ec2.run_instances(ImageId=masters[0], MinCount=1, MaxCount=1)
    assert images.aws_in_use(ec2) == {masters[1]}
    planned, _ = images.prune_aws(1, dry_run=True, region=REGION)
    assert sorted(r["id"] for r in planned) == sorted([masters[0], nodes[0]])
    assert len(ec2.describe_images(Owners=["self"])["Images"]) == 5  # dry run removed nothing
    removed, spared = images.prune_aws(1, region=REGION)
    left = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    assert left == {masters[1], masters[2], nodes[1]}
    assert [r["id"] for r in spared] == [masters[1]]
    assert not set(old_snaps) & existing_snapshots(ec2)


def test_discard_new_removes_exactly_the_recorded_amis(ec2, aws_env, tmp_path):
    masters = bake_amis(ec2, "master", 2)
    recorded = tmp_path / "images.json"
    recorded.write_text(json.dumps({"aws": {"master": {"id": masters[1], "region": REGION}}}))
    removed, _ = images.prune_aws(0, region=REGION, only_ids=images.new_ami_ids(recorded))
    assert [r["id"] for r in removed] == [masters[1]]
    assert {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]} == {masters[0]}


def test_cli_prune_dry_run(ec2, aws_env):
    bake_amis(ec2, "node", 2)
    out = subprocess.run([sys.executable, "-m", "invoke", "prune", "--target", "aws", "--keep",
                          "1", "--dry-run", "--region", REGION],
                         capture_output=True, text=True, env=aws_env | dict(
                             PATH="/usr/bin:/bin"), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("would remove aws node") == 1


def test_cli_prune_bad_keep_is_one_line(aws_env):
    out = subprocess.run([sys.executable, "-m", "invoke", "prune", "--keep", "-3"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "--keep" in out.stderr
