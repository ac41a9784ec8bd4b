"""resolve_source_ami: Canonical's newest trusty image, deprecated ones included."""

from __future__ import annotations

import pytest

from imagebake.bake.source_ami import resolve_source_ami
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
