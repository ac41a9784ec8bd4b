"""The AWS bake finds an AMI baked from the same inputs by its content-hash tag, and only
that one (moto's server; Packer is replaced by a step that registers tagged AMIs)."""

from __future__ import annotations

import time

import pytest

from imagebake import targets
from imagebake.bake import build, existing

from .aws_helpers import REGION, register_ami

AWS = targets.get("aws")


def tag(ec2, ami: str, **tags: str) -> str:
    ec2.create_tags(Resources=[ami], Tags=[{"Key": f"imagebake:{k.replace('_', '-')}",
                                            "Value": v} for k, v in tags.items()])
    return ami


def test_lookup_matches_the_content_hash_not_the_newest(ec2, aws_env):
    wanted = tag(ec2, register_ami(ec2, "master", name="m-old"), content_hash="a" * 64)
    time.sleep(1.1)  # CreationDate has one-second resolution
    tag(ec2, register_ami(ec2, "master", name="m-new"), content_hash="b" * 64)
    tag(ec2, register_ami(ec2, "node", name="n-same"), content_hash="a" * 64)
    found = existing.aws_image(ec2, REGION, "master", "a" * 64)
    assert found["id"] == wanted and found["content_hash"] == "a" * 64
    assert existing.aws_image(ec2, REGION, "master", "c" * 64) is None
    assert existing.aws_image(ec2, REGION, "node", "b" * 64) is None  # role must match too


@pytest.fixture
def fake_packer(monkeypatch, ec2):
    """Packer replaced: 'bakes' by registering an AMI tagged like packer/locals.pkr.hcl does."""
    runs: list[list[str]] = []

    def packer_build(target, todo, effective, hashes, prepared, on_event):
        runs.append(list(todo))
        made = {}
        for role in todo:
            ami = tag(ec2, register_ami(ec2, role, name=f"imagebake-{role}-{hashes[role][:12]}"),
                      content_hash=hashes[role])
            made[role] = {"id": ami, "region": REGION, "content_hash": hashes[role]}
        return made

    monkeypatch.setattr(build, "_packer_build", packer_build)
    monkeypatch.setattr(build.packer, "packer_bin", lambda: "/bin/true")
    return runs


def test_aws_bake_skips_unchanged_and_rebakes_changed_inputs(aws_env, fake_packer):
    first = AWS.bake(variables={"disco_source": "none"})
    assert first["built"] == ["master", "node"]
    again = AWS.bake(variables={"disco_source": "none"})
    assert again["skipped"] == ["master", "node"] and fake_packer == [["master", "node"]]
    assert {r: e["id"] for r, e in again["images"].items()} == \
        {r: e["id"] for r, e in first["images"].items()}
    changed = AWS.bake(variables={"disco_source": "none", "disco_ref": "develop"})
    assert changed["built"] == ["master", "node"] and len(fake_packer) == 2
