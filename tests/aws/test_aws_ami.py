"""resolve_source_ami and apply_base: Canonical's newest trusty image, deprecated ones
included (the default base); Debian's own newest Debian 12 image for --var base=debian-12,
with its login user and IMDSv2 required, and the launch options an AMI of it gets; the
IMDSv2 choice for a source AMI the user names (moto's server holds the images)."""

from __future__ import annotations

import pytest

from imagebake import targets
from imagebake.bake import build
from imagebake.bake.source_ami import apply_base, resolve_source_ami
from imagebake.errors import ImagebakeError

from .aws_helpers import REGION


def test_newest_canonical_trusty_image_is_picked(aws_env, calls):
    ami = resolve_source_ami(REGION, calls.factory(REGION, None))
    # newest trusty by CreationDate; newer xenial and a non-Canonical copy are ignored
    assert ami == "ami-0aaaaaaaaaaaaaa02"
    params = calls.named("DescribeImages")[0]
    assert params["Owners"] == ["099720109477"]
    assert params["IncludeDeprecated"] is True
    names = [f["Values"] for f in params["Filters"] if f["Name"] == "name"]
    assert names == [["ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-amd64-server-*"]]


def test_no_image_is_one_line(aws_env, calls):
    calls.answer["DescribeImages"] = {"Images": []}
    with pytest.raises(ImagebakeError) as err:
        resolve_source_ami(REGION, calls.factory(REGION, None))
    assert "no Ubuntu 14.04" in str(err.value) and "\n" not in str(err.value)


def test_debian_12_base_is_debians_newest_debian_12_image(aws_env, calls):
    ami = resolve_source_ami(REGION, calls.factory(REGION, None), "debian-12")
    # newest Debian 12 by CreationDate; Debian 13 and a copy by someone else are ignored
    assert ami == "ami-0aaaaaaaaaaaaaa06"
    params = calls.named("DescribeImages")[0]
    assert params["Owners"] == ["136693071363"] and params["IncludeDeprecated"] is False
    assert [f["Values"] for f in params["Filters"] if f["Name"] == "name"] == [
        ["debian-12-amd64-*"]]


def test_debian_12_base_logs_in_as_admin_and_requires_imdsv2(aws_env, calls):
    effective = {"base": "debian-12"}
    apply_base(effective, REGION, calls.factory(REGION, None))
    assert effective == {"base": "debian-12", "source_ami": "ami-0aaaaaaaaaaaaaa06",
                         "ssh_username": "admin", "imdsv2_support": "yes"}
    trusty = {}
    apply_base(trusty, REGION, calls.factory(REGION, None))
    assert trusty == {"source_ami": "ami-0aaaaaaaaaaaaaa02", "ssh_username": "ubuntu",
                      "imdsv2_support": "no"}


def test_debian_12_base_refuses_imdsv1_and_keeps_what_the_user_gave(aws_env, calls):
    with pytest.raises(ImagebakeError, match="requires IMDSv2"):
        apply_base({"base": "debian-12", "imdsv2_support": "no"}, REGION,
                   calls.factory(REGION, None))
    given = {"base": "debian-12", "source_ami": "ami-0123456789abcdef0", "ssh_username": "me"}
    apply_base(given, REGION, calls.factory(REGION, None))
    assert given["source_ami"] == "ami-0123456789abcdef0" and given["ssh_username"] == "me"
    assert calls.named("DescribeImages") == []  # a given AMI is not looked up
    with pytest.raises(ImagebakeError, match="base=focal"):
        apply_base({"base": "focal"}, REGION, calls.factory(REGION, None))


SOURCE_AMIS = {  # conftest.CANONICAL_IMAGES: what each base's cloud-init can do
    "ami-0aaaaaaaaaaaaaa02": "no",   # trusty 14.04: cloud-init 0.7.5 predates IMDSv2 (the fence)
    "ami-0aaaaaaaaaaaaaa11": "no",   # bionic 18.04
    "ami-0aaaaaaaaaaaaaa12": "no",   # debian 10
    "ami-0aaaaaaaaaaaaaa09": "yes",  # focal 20.04
    "ami-0aaaaaaaaaaaaaa10": "yes",  # jammy 22.04
    "ami-0aaaaaaaaaaaaaa06": "yes",  # debian 12
}


@pytest.fixture
def packer_vars(monkeypatch, aws_env):
    """The variables the bake hands Packer (Packer itself is not run: nothing is built)."""
    seen: list[dict] = []

    def packer_build(target, todo, effective, hashes, prepared, on_event):
        seen.append(dict(effective))
        return {}

    monkeypatch.setattr(build, "_packer_build", packer_build)
    monkeypatch.setattr(build.packer, "packer_bin", lambda: "/bin/true")
    return seen


@pytest.mark.parametrize("ami", sorted(SOURCE_AMIS))
def test_a_modern_base_is_baked_for_imdsv2_only(packer_vars, ami):
    targets.get("aws").bake(variables={"disco_source": "none", "source_ami": ami})
    assert packer_vars[-1]["imdsv2_support"] == SOURCE_AMIS[ami]


def test_the_default_trusty_base_keeps_its_fence(packer_vars):
    targets.get("aws").bake(variables={"disco_source": "none"})
    assert packer_vars[-1]["source_ami"] == "ami-0aaaaaaaaaaaaaa02"
    assert packer_vars[-1]["imdsv2_support"] == "no"


def test_an_explicit_imdsv2_support_wins(packer_vars):
    targets.get("aws").bake(variables={"disco_source": "none", "imdsv2_support": "no",
                                        "source_ami": "ami-0aaaaaaaaaaaaaa10"})
    assert packer_vars[-1]["imdsv2_support"] == "no"
