"""resolve_source_ami and apply_base: Canonical's newest trusty image, deprecated ones
included (the default base); Debian's own newest Debian 12 image for --var base=debian-12,
with its login user and IMDSv2 required, and the launch options an AMI of it gets."""

from __future__ import annotations

import pytest

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
    assert trusty == {"source_ami": "ami-0aaaaaaaaaaaaaa02", "ssh_username": "ubuntu"}


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
