"""Launch, grow, status, ssh and destroy against moto, checked through the EC2 API."""

from __future__ import annotations

import base64
import json
import time

import pytest

from imagebake import state
from imagebake.agent import spec as agent_spec
from imagebake.errors import ImagebakeError
from imagebake.targets.aws.cluster import AwsTarget
from tests.fakes import FakeAgent

from .aws_helpers import REGION, client_error, register_ami, tagged

CIDR = "203.0.113.7/32"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheMasterForTestsOnly000000000"
NODE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINodeKeyForTestsOnly0000000000000000000"


def aws(calls=None, readiness=None):
    """The AWS target, with the test's call counter and readiness stub when given."""
    return AwsTarget(session_factory=calls.factory if calls is not None else None,
                     agent=FakeAgent(status=readiness))


def launch(calls=None, readiness=None, **kw):
    args = dict(name="c1", slaves=3, workers_per_node=None, wait=False, allow_cidr=CIDR)
    args.update(kw)
    return aws(calls, readiness).launch(**args)


def instances(ec2, ids):
    out = []
    for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=ids):
        for reservation in page["Reservations"]:
            out.extend(reservation["Instances"])
    return out


def user_data(ec2, instance_id):
    value = ec2.describe_instance_attribute(InstanceId=instance_id,
                                            Attribute="userData")["UserData"]["Value"]
    return base64.b64decode(value).decode()


def ready_stub(record_nodes_from):
    """A readiness callable that answers like the master agent once all joined."""

    def readiness(address, port, record):
        assert port == 8990
        nodes = [{"hostname": f"node{i}", "address": n["private_ip"], "cores": 2,
                  "host_pubkey": NODE_KEY} for i, n in enumerate(record["nodes"], 1)]
        return {"type": "status_reply", "ready": True, "joined": len(nodes),
                "expected_nodes": len(nodes), "nodes": nodes, "master": "master",
                "host_pubkey": HOST_KEY, "disco": "running"}

    return readiness


# ------------------------------------------------------------------ launch shape
def test_security_group_allows_members_and_caller_only(amis, ec2):
    record = launch()
    group = ec2.describe_security_groups(GroupIds=[record["security_group"]])["SecurityGroups"][0]
    rules = sorted(group["IpPermissions"], key=lambda p: (p.get("FromPort", -1), p["IpProtocol"]))
    assert len(rules) == 3
    members = rules[0]
    assert members["IpProtocol"] == "-1"
    assert [p["GroupId"] for p in members["UserIdGroupPairs"]] == [record["security_group"]]
    assert not members.get("IpRanges")
    ports = [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules[1:]]
    assert ports == [("tcp", 22, 22), ("tcp", 8990, 8990)]  # Disco's 8989: members only
    for rule in rules[1:]:
        assert [r["CidrIp"] for r in rule["IpRanges"]] == [CIDR]
        assert not rule.get("UserIdGroupPairs")
    # default egress kept
    assert any(p["IpProtocol"] == "-1" for p in group["IpPermissionsEgress"])


def test_default_cidr_is_the_callers_address(amis, ec2):
    record = launch(allow_cidr=None)
    assert record["allow_cidr"] == "1.2.3.4/32"
    group = ec2.describe_security_groups(GroupIds=[record["security_group"]])["SecurityGroups"][0]
    cidrs = {r["CidrIp"] for p in group["IpPermissions"] for r in p.get("IpRanges", [])}
    assert cidrs == {"1.2.3.4/32"}


def test_explicit_open_world_is_honoured(amis, ec2):
    record = launch(allow_cidr="0.0.0.0/0", allow_world=True)
    group = ec2.describe_security_groups(GroupIds=[record["security_group"]])["SecurityGroups"][0]
    cidrs = {r["CidrIp"] for p in group["IpPermissions"] for r in p.get("IpRanges", [])}
    assert cidrs == {"0.0.0.0/0"}


def test_all_instances_in_one_zone_and_subnet(amis, ec2):
    record = launch(slaves=5)
    found = instances(ec2, record["ids"])
    assert len(found) == 6
    assert {i["Placement"]["AvailabilityZone"] for i in found} == {record["az"]}
    assert {i["SubnetId"] for i in found} == {record["subnet"]}
    groups = {g["GroupId"] for i in found for g in i.get("SecurityGroups", [])} | {
        g["GroupId"] for i in found for n in i.get("NetworkInterfaces", [])
        for g in n.get("Groups", [])}
    assert groups == {record["security_group"]}


def test_slaves_start_in_one_run_instances_call(amis, calls):
    record = launch(calls, slaves=7)
    runs = calls.named("RunInstances")
    assert len(runs) == 2
    assert (runs[0]["MinCount"], runs[0]["MaxCount"]) == (1, 1)
    assert (runs[1]["MinCount"], runs[1]["MaxCount"]) == (7, 7)
    assert runs[0]["ImageId"] == amis["master"] and runs[1]["ImageId"] == amis["node"]
    assert len(record["nodes"]) == 7


def test_every_resource_is_tagged_at_creation(amis, ec2, calls):
    record = launch(calls, ttl="4h")
    expected_keys = {"imagebake:cluster", "imagebake:role", "Name", "owner", "created", "ttl"}
    for params in calls.named("RunInstances"):
        types = {t["ResourceType"] for t in params["TagSpecifications"]}
        assert {"instance", "volume"} <= types
    assert not calls.named("CreateTags")  # nothing tagged afterwards
    for inst in instances(ec2, record["ids"]):
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert expected_keys <= set(tags)
        assert tags["imagebake:cluster"] == "c1"
        assert tags["imagebake:role"] == ("master" if inst["InstanceId"] == record["master"]["id"]
                                          else "node")
        assert tags["owner"].startswith("arn:aws:")
        assert tags["ttl"] == "4h"
    volumes = ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": record["ids"]}])["Volumes"]
    assert len(volumes) == len(record["ids"])
    for volume in volumes:
        tags = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}
        assert expected_keys <= set(tags) and tags["imagebake:cluster"] == "c1"
    group = ec2.describe_security_groups(GroupIds=[record["security_group"]])["SecurityGroups"][0]
    assert {t["Key"]: t["Value"] for t in group["Tags"]}["imagebake:cluster"] == "c1"


def test_metadata_options_and_shutdown_behaviour(amis, ec2):
    record = launch()
    for inst in instances(ec2, record["ids"]):
        options = inst["MetadataOptions"]
        assert options["HttpTokens"] == "optional"  # trusty's cloud-init 0.7.5: no IMDSv2
        assert options["HttpPutResponseHopLimit"] == 1
        assert options["HttpEndpoint"] == "enabled"
        attr = ec2.describe_instance_attribute(
            InstanceId=inst["InstanceId"], Attribute="instanceInitiatedShutdownBehavior")
        assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"


def test_imdsv2_required_when_the_image_says_so(ec2, aws_env):
    master = register_ami(ec2, "master", imdsv2="yes")
    node = register_ami(ec2, "node", imdsv2="no")
    record = launch(master_ami=master, node_ami=node, slaves=1)
    found = {i["InstanceId"]: i for i in instances(ec2, record["ids"])}
    assert found[record["master"]["id"]]["MetadataOptions"]["HttpTokens"] == "required"
    assert found[record["nodes"][0]["id"]]["MetadataOptions"]["HttpTokens"] == "optional"


def test_user_data_is_the_agent_spec_without_private_keys(amis, ec2):
    before = time.time()
    record = launch(slaves=2, ttl="90m")
    master_text = user_data(ec2, record["master"]["id"])
    master = agent_spec.loads(master_text)
    assert master["role"] == "master" and master["expected_nodes"] == 2
    assert master["token"] == record["token"] and master["cookie"] == record["cookie"]
    assert master["launcher_key"] == record["launcher_key"] != record["token"]
    assert before + 5400 - 5 <= master["ttl_deadline"] <= time.time() + 5400 + 5
    for node in record["nodes"]:
        text = user_data(ec2, node["id"])
        spec = agent_spec.loads(text)
        assert spec["role"] == "node"
        assert spec["master"]["address"] == record["master"]["private_ip"]
        assert (spec["token"], spec["cookie"]) == (master["token"], master["cookie"])
        assert "launcher_key" not in spec and record["launcher_key"] not in text
        assert spec["master"]["join_port"] == 8990 and spec["disco_port"] == 8989
    for text in [master_text] + [user_data(ec2, n["id"]) for n in record["nodes"]]:
        assert "PRIVATE KEY" not in text
        assert len(text.encode()) < 16 * 1024
        assert json.loads(text)["cookie"]


def test_record_is_saved_with_what_later_commands_need(amis):
    record = launch()
    saved = state.load("c1")
    assert saved == record
    for key in ("target", "name", "region", "ids", "security_group", "az", "subnet", "token",
                "created_at"):
        assert saved[key], key
    assert saved["target"] == "aws" and saved["region"] == REGION
    summary = aws().summary(saved)
    assert "c1" in summary and saved["master"]["id"] in summary


def test_spot_refusal_is_one_clear_line_and_leaves_nothing(amis, ec2, calls):
    calls.fail[("RunInstances", 2)] = client_error("MaxSpotInstanceCountExceeded")
    with pytest.raises(ImagebakeError) as err:
        launch(calls, spot=True)
    assert "spot request refused" in str(err.value) and "\n" not in str(err.value)
    assert tagged(ec2, "c1") == {"instances": [], "groups": [], "spot": []}
    assert state.load("c1") is None


def test_placement_group_named_after_the_cluster(amis, calls):
    # moto has no placement groups: its answers come from a before-call hook here.
    calls.answer["CreatePlacementGroup"] = {}
    calls.answer["DeletePlacementGroup"] = {}
    record = launch(calls, placement_group=True, instance_type="c5.large")
    create = calls.named("CreatePlacementGroup")[0]
    assert create["GroupName"] == "imagebake-c1" and create["Strategy"] == "cluster"
    assert create["TagSpecifications"][0]["ResourceType"] == "placement-group"
    for params in calls.named("RunInstances"):
        assert params["Placement"]["GroupName"] == "imagebake-c1"
    aws(calls).destroy("c1", record)
    assert calls.named("DeletePlacementGroup")[0]["GroupName"] == "imagebake-c1"


# ------------------------------------------------------------------ failures
@pytest.mark.parametrize("code", ["InsufficientInstanceCapacity", "InstanceLimitExceeded",
                                  "InvalidParameterValue"])
def test_failure_half_way_leaves_nothing(amis, ec2, calls, code):
    calls.fail[("RunInstances", 2)] = client_error(code)
    with pytest.raises(ImagebakeError) as err:
        launch(calls, slaves=10)
    message = str(err.value)
    assert "removed what was started" in message and "\n" not in message
    assert len(calls.named("RunInstances")) == 2  # the master had started
    assert calls.named("TerminateInstances")
    assert tagged(ec2, "c1") == {"instances": [], "groups": [], "spot": []}
    assert state.load("c1") is None


def test_interrupt_while_waiting_leaves_nothing(amis, ec2):
    def interrupted(address, port, record):
        raise KeyboardInterrupt

    with pytest.raises(ImagebakeError, match="interrupted"):
        launch(wait=True, readiness=interrupted)
    assert tagged(ec2, "c1") == {"instances": [], "groups": [], "spot": []}


def test_keep_on_failure_keeps_the_instances(amis, ec2, calls):
    calls.fail[("RunInstances", 2)] = client_error("InsufficientInstanceCapacity")
    with pytest.raises(ImagebakeError, match="keep-on-failure"):
        launch(calls, keep_on_failure=True)
    assert len(tagged(ec2, "c1")["instances"]) == 1
    assert state.load("c1")["failed"]
    aws().destroy("c1", state.load("c1"))
    assert tagged(ec2, "c1") == {"instances": [], "groups": [], "spot": []}


# ------------------------------------------------------------------ wait, status, ssh
class WaiterSpy:
    """Records every botocore waiter the EC2 client is asked for and what it waits on:
    a mixin put in front of the client class through the creating-client-class event."""

    def __init__(self):
        self.waits: list[tuple[str, dict]] = []

    def inject(self, class_attributes, base_classes, **_):
        spy = self

        class Spied:
            def get_waiter(self, name):
                waiter = super().get_waiter(name)
                real = waiter.wait

                def wait(**kwargs):
                    spy.waits.append((name, kwargs))
                    return real(**kwargs)

                waiter.wait = wait
                return waiter

        base_classes.insert(0, Spied)

    def factory(self, calls):
        def make(region, profile):
            session = calls.factory(region, profile)
            session.events.register("creating-client-class.ec2", self.inject)
            return session

        return make


def test_wait_uses_waiters_and_batched_describes(amis, calls):
    spy = WaiterSpy()
    target = AwsTarget(session_factory=spy.factory(calls), agent=FakeAgent(ready_stub(None)))
    record = target.launch(name="c1", slaves=6, wait=True, allow_cidr=CIDR)
    assert record["ready"] is True
    # one instance_running waiter over all seven instances, with its own delay (no sleep loop)
    running = [kw for name, kw in spy.waits if name == "instance_running"]
    assert len(running) == 1
    assert sorted(running[0]["InstanceIds"]) == sorted(record["ids"])
    assert running[0]["WaiterConfig"]["Delay"] > 0
    describes = calls.named("DescribeInstances")
    assert all(len(p.get("InstanceIds", [])) in (0, 7) for p in describes)
    assert max(len(p.get("InstanceIds", [])) for p in describes) == 7


def test_status_and_ssh_after_ready(amis):
    record = launch(slaves=2, wait=True, readiness=ready_stub(None))
    known = state.state_dir() / "c1.known_hosts"
    assert HOST_KEY.split()[1] in known.read_text()  # pinned as the launch waited
    known.unlink()
    with pytest.raises(ImagebakeError, match="not known"):
        aws().ssh_argv(record, None)
    report = aws(readiness=ready_stub(None)).status(record)  # pins again, in the file
    assert report["ready"] is True
    assert report["master"]["state"] == "running"
    assert [n["joined"] for n in report["nodes"]] == [True, True]
    argv = aws().ssh_argv(state.load("c1"), None)
    assert argv[0] == "ssh" and "StrictHostKeyChecking=yes" in argv
    assert f"UserKnownHostsFile={known}" in argv
    assert argv[-1] == f"ubuntu@{record['master']['public_ip']}"
    assert HOST_KEY in known.read_text()
    node_argv = aws().ssh_argv(state.load("c1"), "1")
    assert node_argv[-1] == f"ubuntu@{record['nodes'][0]['private_ip']}"


def test_after_a_no_wait_launch_status_pins_and_ssh_finds_the_address_record_unchanged(amis):
    launch(slaves=1, wait=False)
    record = state.load("c1")
    public = record["master"]["public_ip"]
    record["master"]["public_ip"] = None  # RunInstances answers before EC2 assigns it
    state.save(record)
    saved = state.state_dir() / "clusters" / "c1.json"
    before = saved.read_bytes()
    report = aws(readiness=ready_stub(None)).status(state.load("c1"))
    assert report["ready"] is True and report["master"]["address"] == public
    assert aws().ssh_argv(state.load("c1"), None)[-1] == f"ubuntu@{public}"
    assert aws().agent_endpoint(state.load("c1")) == (public, 8990)
    assert saved.read_bytes() == before  # status and ssh only read the record


def test_run_and_copy_act_as_disco_as_on_the_local_targets(amis):
    """`invoke run`/`copy` reach a member as the login user ubuntu, who has sudo; the
    command itself runs as disco (unprivileged), as on docker and qemu."""
    from imagebake.targets import fleet
    from tests.unit.targets.test_fleet import remote_user

    launch(slaves=2, wait=True, readiness=ready_stub(None))
    for node in (None, "1"):
        argv = aws().batch_argv(state.load("c1"), node, fleet.shell_words("id -un"))
        assert remote_user(argv, "ubuntu") == "disco", argv


def test_status_not_ready_when_agent_unreachable(amis):
    record = launch(slaves=1)
    report = aws(readiness=lambda a, p, r: None).status(record)
    assert report["ready"] is False and report["agent_reachable"] is False
    with pytest.raises(ImagebakeError, match="wait until"):
        aws().ssh_argv(state.load("c1"), None)


# ------------------------------------------------------------------ grow and destroy
def test_grow_adds_slaves_in_the_same_zone_with_the_same_secrets(amis, ec2, calls):
    record = launch(slaves=2)
    grown = aws(calls).grow(record, 3)
    assert len(grown["nodes"]) == 5
    runs = calls.named("RunInstances")
    assert len(runs) == 1 and runs[0]["MinCount"] == runs[0]["MaxCount"] == 3
    found = instances(ec2, grown["ids"])
    assert {i["Placement"]["AvailabilityZone"] for i in found} == {record["az"]}
    assert {i["SubnetId"] for i in found} == {record["subnet"]}
    spec = agent_spec.loads(user_data(ec2, grown["nodes"][-1]["id"]))
    assert (spec["token"], spec["cookie"]) == (record["token"], record["cookie"])
    assert spec["master"]["address"] == record["master"]["private_ip"]
    assert state.load("c1")["nodes"] == grown["nodes"]
    assert state.node_names(grown) == ["node01", "node02", "node03", "node04", "node05"]


def test_grow_beyond_the_limit_is_refused(amis):
    record = launch(slaves=60)
    with pytest.raises(ImagebakeError, match="at most 64"):
        aws().grow(record, 5)


def test_destroy_removes_everything_and_twice_is_safe(amis, ec2):
    record = launch(slaves=3)
    # a spot request left behind with the cluster's tags is cancelled too
    ec2.request_spot_instances(
        InstanceCount=1, LaunchSpecification={"ImageId": amis["node"],
                                              "InstanceType": "t2.medium"},
        TagSpecifications=[{"ResourceType": "spot-instances-request",
                            "Tags": [{"Key": "imagebake:cluster", "Value": "c1"},
                                     {"Key": "owner", "Value": record["owner"]}]}])
    message = aws().destroy("c1", record)
    assert "4 instance(s) terminated" in message
    assert tagged(ec2, "c1") == {"instances": [], "groups": [], "spot": []}
    assert state.load("c1") is None
    again = aws().destroy("c1", None)
    assert again.startswith("nothing to destroy")


def test_destroy_finds_the_cluster_by_tag_without_a_record(amis, ec2):
    launch(slaves=2)
    state.remove("c1")
    message = aws().destroy("c1", None)
    assert "3 instance(s) terminated" in message
    assert tagged(ec2, "c1") == {"instances": [], "groups": [], "spot": []}


def test_destroy_leaves_other_clusters_alone(amis, ec2):
    launch(name="keep", slaves=1)
    launch(name="gone", slaves=1)
    aws().destroy("gone", state.load("gone"))
    assert len(tagged(ec2, "keep")["instances"]) == 2
    assert len(tagged(ec2, "keep")["groups"]) == 1
