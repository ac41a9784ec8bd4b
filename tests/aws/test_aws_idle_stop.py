"""--idle-stop on AWS against moto (issue 15 item 4): it travels in the master's user data
only (the master agent enforces it; nodes obey its signed stop order), bad values are one
line with nothing created, and instances terminate on an instance-initiated shutdown."""

from __future__ import annotations

import pytest

from imagebake.agent import spec as agent_spec
from imagebake.errors import ImagebakeError

from .test_aws_launch import instances, launch, user_data


def test_idle_stop_is_in_the_master_user_data_only(amis, ec2):
    record = launch(slaves=2, idle_stop="30m", ttl="4h")
    master = agent_spec.loads(user_data(ec2, record["master"]["id"]))
    assert master["idle_stop"] == 1800 and master["ttl_deadline"] == record["ttl_deadline"]
    assert record["idle_stop"] == 1800
    for node in record["nodes"]:
        assert "idle_stop" not in agent_spec.loads(user_data(ec2, node["id"]))
    ids = [record["master"]["id"], *(n["id"] for n in record["nodes"])]
    for instance_id in ids:  # the master's `shutdown -h now` terminates, as the TTL does
        behaviour = ec2.describe_instance_attribute(
            InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior")
        assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"


@pytest.mark.parametrize("value", ["0m", "-5m", "30", "soon", "10s"])
def test_bad_idle_stop_is_one_line_and_creates_nothing(amis, ec2, value):
    with pytest.raises(ImagebakeError, match="--idle-stop") as info:
        launch(name="badidle", idle_stop=value)
    assert "\n" not in str(info.value)
    tags = [t["Value"] for i in instances(ec2, []) for t in i.get("Tags", [])]
    assert "badidle" not in tags
