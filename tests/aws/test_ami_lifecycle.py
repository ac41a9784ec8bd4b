"""AMI lifecycle: copies in other regions (Packer's ami_regions) are recorded, listed and
pruned with their snapshots in every region; IMDS support and deprecation are set on every
copy through the EC2 API after the bake; the new variables are validated by Packer and are
inputs of the content hash. moto's server copies AMIs (CopyImage) and takes ImdsSupport;
it has no EnableImageDeprecation, so that call is answered by a before-call hook."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from imagebake.bake import images, packer, records, variables
from imagebake.errors import ImagebakeError
from imagebake.targets.aws import images as aws_images
from imagebake.targets.docker import images as docker_images

from .aws_helpers import REGION
from .test_images_prune import bake_amis, existing_snapshots, snapshots_of

WEST = "eu-west-1"
ROOT = Path(__file__).resolve().parents[2]
needs_packer = pytest.mark.skipif(shutil.which("packer") is None, reason="packer not installed")


def copy_to_west(ec2, ami: str) -> str:
    """What Packer's ami_regions does: CopyImage, then the same tags on the copy."""
    west = boto3.client("ec2", region_name=WEST)
    copy = west.copy_image(SourceImageId=ami, SourceRegion=REGION, Name=f"{ami}-copy")["ImageId"]
    tags = ec2.describe_images(ImageIds=[ami])["Images"][0]["Tags"]
    west.create_tags(Resources=[copy], Tags=tags)
    return copy


def record(path: Path, role: str, ami: str, copies: dict[str, str]) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("aws", {})[role] = {"id": ami, "region": REGION, "copies": copies}
    path.write_text(json.dumps(data))


def test_the_manifest_records_every_regions_ami():
    entry = records.ami_entry(
        "master", {"artifact_id": "eu-west-1:ami-0west,us-east-1:ami-0east"},
        "f" * 64, "us-east-1")
    assert entry["id"] == "ami-0east" and entry["region"] == "us-east-1"
    assert entry["copies"] == {"eu-west-1": "ami-0west"}


def test_images_and_prune_see_and_remove_every_copy(ec2, aws_env):
    masters = bake_amis(ec2, "master", 2)
    for day, ami in enumerate(masters, 1):  # the bake's time, which the copies carry too
        ec2.create_tags(Resources=[ami], Tags=[{"Key": "imagebake:built-at",
                                                "Value": f"2024-01-0{day}T00:00:00Z"}])
    copies = [copy_to_west(ec2, ami) for ami in masters]
    west = boto3.client("ec2", region_name=WEST)
    old_copy_snaps = snapshots_of(west, copies[0])
    record(Path(aws_env["IMAGEBAKE_IMAGES_JSON"]), "master", masters[1], {WEST: copies[1]})
    rows = images.list_aws()  # no --region: every region images.json names
    assert {(r["region"], r["id"]) for r in rows} == {
        (REGION, masters[0]), (REGION, masters[1]), (WEST, copies[0]), (WEST, copies[1])}
    assert f"{copies[0]} {WEST}" in images.render(rows)
    removed, _ = images.prune_aws(1)
    assert sorted(r["id"] for r in removed) == sorted([masters[0], copies[0]])
    assert {i["ImageId"] for i in west.describe_images(Owners=["self"])["Images"]} == {copies[1]}
    assert {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]} == {masters[1]}
    assert old_copy_snaps and not set(old_copy_snaps) & existing_snapshots(west)


def test_region_flag_takes_several_regions(ec2, aws_env):
    (ami,) = bake_amis(ec2, "node", 1)
    copy = copy_to_west(ec2, ami)
    assert {r["id"] for r in images.list_aws()} == {ami}  # only the default region
    both = images.list_aws(region=f"{REGION},{WEST}")
    assert {r["id"] for r in both} == {ami, copy}


def test_discard_new_removes_the_copies_too(ec2, aws_env, tmp_path):
    (ami,) = bake_amis(ec2, "master", 1)
    copy = copy_to_west(ec2, ami)
    path = tmp_path / "images.json"
    record(path, "master", ami, {WEST: copy})
    assert images.new_ami_ids(path) == {ami, copy}
    record(Path(aws_env["IMAGEBAKE_IMAGES_JSON"]), "master", ami, {WEST: copy})
    removed, _ = images.prune_aws(0, only_ids=images.new_ami_ids(path))
    assert sorted(r["id"] for r in removed) == sorted([ami, copy])


@pytest.mark.parametrize("value", ["eu west 1", "eu-west-1;x", "EU-WEST-1"])
def test_a_bad_region_list_is_one_line(aws_env, value):
    with pytest.raises(ImagebakeError) as exc:
        images.list_aws(region=value)
    assert "\n" not in str(exc.value) and "--region" in str(exc.value)


def test_imds_support_and_deprecation_are_set_on_every_copy(ec2, aws_env, calls):
    calls.answer["EnableImageDeprecation"] = {"Return": True}
    (ami,) = bake_amis(ec2, "master", 1)
    copy = copy_to_west(ec2, ami)  # moto refuses an AMI id asked in the wrong region
    entries = {"master": {"id": ami, "region": REGION, "copies": {WEST: copy}}}
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    images.finish_amis(entries, {"imdsv2_support": "yes", "ami_deprecate_after": "90d"},
                       session=calls.factory(REGION, None), now=now)
    imds = calls.named("ModifyImageAttribute")
    assert sorted(p["ImageId"] for p in imds) == sorted([ami, copy])
    assert all(p["ImdsSupport"] == {"Value": "v2.0"} for p in imds)
    deprecate = calls.named("EnableImageDeprecation")
    assert sorted(p["ImageId"] for p in deprecate) == sorted([ami, copy])
    assert {p["DeprecateAt"] for p in deprecate} == {"2024-02-12T22:13:00Z"}  # +90 days
    assert entries["master"]["imds_support"] == "v2.0"
    assert entries["master"]["deprecate_at"] == "2024-02-12T22:13:00Z"


def test_nothing_is_set_by_default(aws_env, calls):
    entries = {"node": {"id": "ami-0east", "region": REGION}}
    images.finish_amis(entries, {"imdsv2_support": "no"}, session=calls.factory(REGION, None))
    assert calls.seen == [] and "imds_support" not in entries["node"]


@pytest.mark.parametrize("value", ["90", "d", "-5d", "0d", "3651d", "1.5d"])
def test_a_bad_deprecation_is_one_line_before_aws(aws_env, value):
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "bake", "--target", "aws", "--var",
         f"ami_deprecate_after={value}"], cwd=ROOT, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"error: ami_deprecate_after {value!r} is not a number of days: write e.g. 90d "
        "(1d to 3650d)"]  # imagebake's own check, before any AWS call or Packer run


def test_the_new_variables_are_inputs_of_the_aws_image_hash():
    for key in ("imdsv2_support", "ami_regions", "ami_deprecate_after", "encrypt_boot"):
        assert key in aws_images.KIND.variables, key
        assert key not in docker_images.KIND.variables, key
    assert variables.hashed(aws_images.KIND.variables,
                            {"ami_regions": WEST}) == {"ami_regions": WEST}


@needs_packer
@pytest.mark.parametrize("var,value,ok", [
    ("ami_regions", "eu-west-1,us-east-1", True),
    ("ami_regions", "", True),
    ("ami_regions", "eu west", False),
    ("ami_regions", "eu", False),
    ("ami_deprecate_after", "90d", True),
    ("ami_deprecate_after", "90", False),
    ("ami_deprecate_after", "-5d", False),
])
def test_packer_validates_the_new_variables(monkeypatch, tmp_path, var, value, ok):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(ROOT)
    given = {"content_hash": {"master": "a" * 64, "node": "b" * 64},
             "source_ami": "ami-0123456789abcdef0", "ssh_source_cidr": "192.0.2.1/32",
             var: value}
    if ok:
        packer.validate(ROOT / "packer", given)
    else:
        with pytest.raises(ImagebakeError, match=var):
            packer.validate(ROOT / "packer", given)


def test_the_copies_carry_the_tags_and_skip_the_build_region():
    text = (ROOT / "packer" / "sources.pkr.hcl").read_text()
    block = text.split('source "amazon-ebs" "master"')[1].split("\n}\n")[0]
    assert 'ami_regions     = [for r in compact(split(",", var.ami_regions)) : r if r != ' \
           'var.aws_region]' in block
    assert "snapshot_tags" in block and "tags " in block and "encrypt_boot" in block


def test_the_bake_policy_allows_copies_imds_and_deprecation():
    policy = json.loads((ROOT / "iam" / "bake-policy.json").read_text())
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert {"ec2:CopyImage", "ec2:ModifyImageAttribute", "ec2:EnableImageDeprecation",
            "ec2:DeregisterImage", "ec2:DeleteSnapshot"} <= actions
