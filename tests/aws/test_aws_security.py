"""Issue 13, the AWS launcher's side: what reaches the cluster from outside (H1), IMDSv2
from the bake's tag and what the docs say about user data (H2), which addresses a host
key is pinned under (M2), and whose resources destroy and cleanup touch (M4).

Against moto's server on 127.0.0.1, real boto3 calls; another principal's resources are
made directly with boto3 (tagged as that principal's launch would tag them) or through an
STS AssumeRole session in moto.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import boto3
import pytest

from imagebake import state
from imagebake.errors import ImagebakeError
from imagebake.targets.aws import network, preflight
from imagebake.targets.aws.cluster import AwsTarget
from imagebake.targets.aws.hostkeys import known_hosts_path
from tests.fakes import FakeAgent

from .aws_helpers import REGION, register_ami
from .test_aws_launch import CIDR, HOST_KEY, NODE_KEY, instances, launch, ready_stub

ROOT = Path(__file__).resolve().parents[2]
EVIL_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITokenHolderKeyForTestsOnly00000000000000"
OTHER = "arn:aws:iam::123456789012:user/someone-else"


def key_only(key: str) -> str:
    return " ".join(key.split()[:2])


def group_rules(ec2, group_id: str) -> list[dict]:
    return ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"]


def covers(rule: dict, port: int) -> bool:
    return rule["IpProtocol"] == "-1" or rule.get("FromPort", 0) <= port <= rule.get("ToPort", -1)


# ------------------------------------------------------------------ H1: who reaches what
def test_disco_job_api_is_open_to_members_only(amis, ec2):
    record = launch()
    rules = group_rules(ec2, record["security_group"])
    from_caller = sorted((r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules
                         if r.get("IpRanges") or r.get("Ipv6Ranges"))
    assert from_caller == [("tcp", 22, 22), ("tcp", 8990, 8990)]
    for rule in rules:
        if covers(rule, 8989):
            assert not rule.get("IpRanges") and not rule.get("Ipv6Ranges"), rule
            assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [record["security_group"]]
    assert any(covers(r, 8989) for r in rules)  # members still reach Disco


def test_an_open_world_cidr_still_does_not_reach_disco(amis, ec2):
    record = launch(allow_cidr="0.0.0.0/0", allow_world=True)
    for rule in group_rules(ec2, record["security_group"]):
        if rule.get("IpRanges"):
            assert not covers(rule, 8989), rule


def test_every_port_is_declared_next_to_its_listener():
    table = {entry.port: entry for entry in network.LISTENERS}
    assert table[22].open_to == network.CALLER and table[8990].open_to == network.CALLER
    assert table[8989].open_to == network.MEMBERS
    assert all(entry.listener for entry in network.LISTENERS)
    assert network.caller_ports() == (22, 8990)


# ------------------------------------------------------------------ H2: IMDSv2 from the bake
def _source_blocks(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in
            re.finditer(r'source "amazon-ebs" "(\w+)" \{(.*?)\n\}', text, re.S)}


def test_the_bake_writes_the_imds_tag_the_launcher_reads():
    sources = (ROOT / "packer" / "sources.pkr.hcl").read_text()
    variables = (ROOT / "packer" / "variables.pkr.hcl").read_text()
    blocks = _source_blocks(sources)
    assert set(blocks) == {"master", "node"}
    for role, block in blocks.items():
        for field in ("tags", "run_tags"):
            line = next(x for x in block.splitlines() if x.strip().startswith(field + " "))
            assert f'"{preflight.IMDS_TAG}" = var.imdsv2_support' in line, (role, field)
    declared = re.search(r'variable "imdsv2_support" \{(.*?)\n\}', variables, re.S).group(1)
    assert 'default     = "yes"' in declared and "validation {" in declared


@pytest.mark.skipif(shutil.which("packer") is None, reason="packer not installed")
@pytest.mark.parametrize("value,ok", [("yes", True), ("no", True), ("maybe", False),
                                      ("YES", False)])
def test_imdsv2_support_is_validated_by_packer(value, ok):
    from imagebake.bake import packer

    hashes = {"master": "a" * 64, "node": "b" * 64}
    args = ({"content_hash": hashes, "source_ami": "ami-0123456789abcdef0",
             "ssh_source_cidr": "192.0.2.1/32", "imdsv2_support": value}, )
    if ok:
        packer.validate(ROOT / "packer", *args, only=["amazon-ebs.master"])
    else:
        with pytest.raises(ImagebakeError):
            packer.validate(ROOT / "packer", *args, only=["amazon-ebs.master"])


def test_an_image_tagged_by_the_bake_gets_imdsv2_only(ec2, aws_env):
    # the tag as sources.pkr.hcl writes it with imdsv2_support=yes, on both images
    master = register_ami(ec2, "master", imdsv2="yes")
    node = register_ami(ec2, "node", imdsv2="yes")
    record = launch(master_ami=master, node_ami=node, slaves=2)
    for inst in instances(ec2, record["ids"]):
        assert inst["MetadataOptions"]["HttpTokens"] == "required"
        assert inst["MetadataOptions"]["HttpPutResponseHopLimit"] == 1


def test_docs_say_who_can_read_the_user_data_and_what_fences_it():
    text = (ROOT / "docs" / "aws.md").read_text()
    assert "DescribeInstanceAttribute" in text and "ec2:DescribeInstanceAttribute" in text
    assert "every boot" in text
    assert "imdsv2_support" in text
    assert '"Effect": "Deny"' in (ROOT / "iam" / "protect-user-data-policy.json").read_text()


# ------------------------------------------------------------------ M2: pinned host keys
def lying_reply(master_public: str, own: dict, other: dict):
    """A signed reply in which a token holder (node 1) lists the master's public address
    and node 2's address as its own, and a forged entry claims the master's address."""

    def readiness(address, port, record):
        return {"type": "status_reply", "ready": True, "joined": 2, "expected_nodes": 2,
                "master": "master", "host_pubkey": HOST_KEY, "disco": "running",
                "nodes": [
                    {"hostname": "node1", "address": own["private_ip"],
                     "addresses": [own["private_ip"], master_public, other["private_ip"]],
                     "cores": 2, "host_pubkey": EVIL_KEY},
                    {"hostname": "node2", "address": other["private_ip"],
                     "addresses": [other["private_ip"]], "cores": 2, "host_pubkey": NODE_KEY},
                    {"hostname": "node3", "address": master_public,
                     "addresses": [master_public], "cores": 2, "host_pubkey": EVIL_KEY},
                ]}

    return readiness


def pinned(name: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in known_hosts_path(name).read_text().splitlines():
        hosts, key = line.split(" ", 1)
        for host in hosts.split(","):
            out.setdefault(host, set()).add(key)
    return out


def test_a_node_key_is_pinned_only_under_its_ec2_private_address(amis):
    def readiness(address, port, rec):
        m, (a, b) = rec["master"], rec["nodes"]
        return lying_reply(m["public_ip"], a, b)(address, port, rec)

    record = launch(slaves=2, wait=True, readiness=readiness)
    master, (n1, n2) = record["master"], record["nodes"]
    keys = pinned("c1")
    assert keys[master["public_ip"]] == {key_only(HOST_KEY)}
    assert keys[master["private_ip"]] == {key_only(HOST_KEY)}
    assert keys[n1["private_ip"]] == {key_only(EVIL_KEY)}
    assert keys[n2["private_ip"]] == {key_only(NODE_KEY)}
    ec2_addresses = {master["public_ip"], master["private_ip"], n1["private_ip"],
                     n2["private_ip"]}
    assert set(keys) == ec2_addresses
    assert "node_host_keys" not in state.load("c1")  # the known_hosts file is the store


def test_status_only_reads_the_record_and_pins_under_the_addresses_ec2_reports(amis):
    record = launch(slaves=2, wait=True, readiness=ready_stub(None))
    at_launch = pinned("c1")  # the launch pinned as it waited for the agents
    assert at_launch[record["master"]["public_ip"]] == {key_only(HOST_KEY)}
    assert all(at_launch[n["private_ip"]] == {key_only(NODE_KEY)} for n in record["nodes"])
    saved = state.state_dir() / "clusters" / "c1.json"
    before, written = saved.read_bytes(), (saved.stat().st_ino, saved.stat().st_mtime_ns)
    # the caller's record is stale or tampered: status trusts DescribeInstances
    real = {n["id"]: n["private_ip"] for n in record["nodes"]}
    stale = json.loads(before)
    stale["nodes"][1]["private_ip"] = stale["master"]["private_ip"]
    AwsTarget(agent=FakeAgent(lambda a, p, r: lying_reply(
        r["master"]["public_ip"], {"private_ip": real[r["nodes"][0]["id"]]},
        {"private_ip": real[r["nodes"][1]["id"]]})(a, p, r))).status(stale)
    keys = pinned("c1")
    assert keys[record["master"]["public_ip"]] == {key_only(HOST_KEY)}
    assert keys[record["master"]["private_ip"]] == {key_only(HOST_KEY)}
    assert keys[real[record["nodes"][1]["id"]]] == {key_only(NODE_KEY)}
    assert keys[real[record["nodes"][0]["id"]]] == {key_only(EVIL_KEY)}
    assert set(keys) == {record["master"]["public_ip"], record["master"]["private_ip"],
                         *real.values()}
    assert saved.read_bytes() == before  # status wrote nothing to the record,
    assert (saved.stat().st_ino, saved.stat().st_mtime_ns) == written  # not even the same
    assert stale["nodes"][1]["private_ip"] == record["master"]["private_ip"]  # nor fixed it


def test_two_keys_claimed_for_one_address_pin_neither(amis):
    def readiness(address, port, rec):
        a, b = rec["nodes"]
        return {"type": "status_reply", "ready": True, "host_pubkey": HOST_KEY,
                "nodes": [{"hostname": "node1", "address": a["private_ip"],
                           "host_pubkey": NODE_KEY},
                          {"hostname": "node2", "address": b["private_ip"],
                           "host_pubkey": NODE_KEY},
                          {"hostname": "evil", "address": b["private_ip"],
                           "host_pubkey": EVIL_KEY}]}

    record = launch(slaves=2, wait=True, readiness=readiness)
    keys = pinned("c1")
    assert keys[record["nodes"][0]["private_ip"]] == {key_only(NODE_KEY)}
    assert record["nodes"][1]["private_ip"] not in keys


# ------------------------------------------------------------------ M4: owner-scoped
def other_principals_cluster(ec2, ami: str, name: str = "c1") -> dict:
    """Resources another principal's launch of NAME would have: an instance, a security
    group (in its own VPC: group names are per VPC), an open spot request."""
    tags = [{"Key": "imagebake:cluster", "Value": name}, {"Key": "owner", "Value": OTHER},
            {"Key": "imagebake:role", "Value": "node"}]
    instance = ec2.run_instances(
        ImageId=ami, InstanceType="t2.medium", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"][0]
    vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
    group = ec2.create_security_group(
        GroupName=f"imagebake-{name}", Description="theirs", VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}])["GroupId"]
    spot = ec2.request_spot_instances(
        InstanceCount=1, LaunchSpecification={"ImageId": ami, "InstanceType": "t2.medium"},
        TagSpecifications=[{"ResourceType": "spot-instances-request", "Tags": tags}],
    )["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
    return {"instance": instance["InstanceId"], "group": group, "spot": spot}


def still_there(ec2, theirs: dict) -> None:
    found = ec2.describe_instances(InstanceIds=[theirs["instance"]])["Reservations"][0]
    assert found["Instances"][0]["State"]["Name"] in ("pending", "running")
    assert ec2.describe_security_groups(GroupIds=[theirs["group"]])["SecurityGroups"]
    spot = ec2.describe_spot_instance_requests(
        SpotInstanceRequestIds=[theirs["spot"]])["SpotInstanceRequests"][0]
    assert spot["State"] in ("open", "active")


def mine_gone(ec2, record: dict) -> None:
    states = {i["State"]["Name"] for i in instances(ec2, record["ids"])}
    assert states <= {"terminated"}, states
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-id", "Values": [record["security_group"]]}])["SecurityGroups"]
    assert groups == []


@pytest.mark.parametrize("with_record", [True, False])
def test_destroy_leaves_another_principals_same_named_cluster_alone(amis, ec2, with_record):
    record = launch(slaves=2)
    theirs = other_principals_cluster(ec2, amis["node"])
    if not with_record:
        state.remove("c1")
    message = AwsTarget().destroy("c1", record if with_record else None)
    assert "3 instance(s) terminated" in message and "spot" not in message
    still_there(ec2, theirs)
    mine_gone(ec2, record)


def test_launch_failure_cleanup_leaves_another_principals_cluster_alone(amis, ec2):
    made = {}

    def readiness(address, port, record):
        # another principal launches the same name while we wait, then we give up
        made.update(other_principals_cluster(ec2, amis["node"]))
        raise KeyboardInterrupt

    with pytest.raises(ImagebakeError, match="interrupted"):
        launch(slaves=1, wait=True, readiness=readiness)
    still_there(ec2, made)
    left = [i for r in ec2.describe_instances(Filters=[
        {"Name": "tag:imagebake:cluster", "Values": ["c1"]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
        for i in r["Instances"]]
    assert [i["InstanceId"] for i in left] == [made["instance"]]


def test_destroy_asks_for_placement_groups_by_owner_too(amis, calls):
    calls.answer["CreatePlacementGroup"] = {}
    calls.answer["DeletePlacementGroup"] = {}
    calls.answer["DescribePlacementGroups"] = {"PlacementGroups": []}
    launch(calls, placement_group=True, slaves=1, instance_type="c5.large")
    state.remove("c1")
    AwsTarget(session_factory=calls.factory).destroy("c1", None)
    filters = calls.named("DescribePlacementGroups")[0]["Filters"]
    assert {"Name": "tag:owner", "Values": [ec2_owner()]} in filters
    assert {"Name": "tag:imagebake:cluster", "Values": ["c1"]} in filters


def test_every_cluster_filter_also_filters_on_the_owner(amis, calls):
    record = launch(calls, slaves=1)
    AwsTarget(session_factory=calls.factory).status(record)
    AwsTarget(session_factory=calls.factory).grow(record, 1)
    state.remove("c1")
    AwsTarget(session_factory=calls.factory).destroy("c1", None)
    seen = 0
    for name, params in calls.seen:
        names = [f["Name"] for f in params.get("Filters", [])]
        if "tag:imagebake:cluster" in names:
            seen += 1
            assert "tag:owner" in names, (name, params)
    assert seen >= 4


def test_a_name_taken_by_another_principal_is_refused_without_suggesting_destroy(amis, ec2):
    # their cluster "shared" lives in the default VPC: its security group name is taken
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])
    theirs = ec2.create_security_group(
        GroupName="imagebake-shared", Description="theirs",
        VpcId=default_vpc["Vpcs"][0]["VpcId"],
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [
            {"Key": "imagebake:cluster", "Value": "shared"}, {"Key": "owner", "Value": OTHER}],
        }])["GroupId"]
    with pytest.raises(ImagebakeError) as err:
        launch(name="shared")
    assert "another principal" in str(err.value) and "destroy" not in str(err.value)
    assert state.load("shared") is None
    assert ec2.describe_security_groups(GroupIds=[theirs])["SecurityGroups"]


def test_a_same_named_cluster_of_another_principal_elsewhere_is_no_conflict(amis, ec2):
    theirs = other_principals_cluster(ec2, amis["node"])  # in its own VPC
    record = launch(slaves=1)
    AwsTarget().destroy("c1", record)
    still_there(ec2, theirs)


def ec2_owner() -> str:
    return boto3.client("sts", region_name=REGION).get_caller_identity()["Arn"]


def test_owner_tag_of_an_assumed_role_is_the_role_arn_iam_compares(amis, ec2, aws_env):
    sts = boto3.client("sts", region_name=REGION)
    creds = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/launcher",
                            RoleSessionName="alice")["Credentials"]

    def as_role(region, profile):
        return boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                             aws_secret_access_key=creds["SecretAccessKey"],
                             aws_session_token=creds["SessionToken"],
                             region_name=region or REGION)

    target = AwsTarget(session_factory=as_role)
    record = target.launch(name="c1", slaves=1, wait=False, allow_cidr=CIDR)
    assert record["owner"] == "arn:aws:iam::123456789012:role/launcher"
    for inst in instances(ec2, record["ids"]):
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert tags["owner"] == "arn:aws:iam::123456789012:role/launcher"
    # the default principal (a user) does not touch the role's cluster
    state.remove("c1")
    assert AwsTarget().destroy("c1", None).startswith("nothing to destroy")
    assert AwsTarget(session_factory=as_role).destroy("c1", None).startswith("destroyed c1")


@pytest.mark.parametrize("caller,owner", [
    ("arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice"),
    ("arn:aws:iam::123456789012:user/ops/alice", "arn:aws:iam::123456789012:user/ops/alice"),
    ("arn:aws:sts::123456789012:assumed-role/launcher/alice",
     "arn:aws:iam::123456789012:role/launcher"),
    ("arn:aws-us-gov:sts::123456789012:assumed-role/r/s",
     "arn:aws-us-gov:iam::123456789012:role/r"),
    ("arn:aws:sts::123456789012:federated-user/bob",
     "arn:aws:sts::123456789012:federated-user/bob"),
    ("arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:root"),
])
def test_owner_is_what_aws_principal_arn_holds(caller, owner):
    assert preflight.principal_arn(caller) == owner


CREATES = {"ec2:RunInstances": ("instance", "volume", "network-interface",
                                 "spot-instances-request"),
           "ec2:CreateSecurityGroup": ("security-group",),
           "ec2:CreatePlacementGroup": ("placement-group",)}
MANAGES = ("ec2:TerminateInstances", "ec2:DeleteSecurityGroup", "ec2:DeletePlacementGroup",
           "ec2:CancelSpotInstanceRequests", "ec2:AuthorizeSecurityGroupIngress")


def _listed(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _grants(statement: dict, action: str, kind: str | None = None) -> bool:
    if statement["Effect"] != "Allow" or action not in _listed(statement["Action"]):
        return False
    resources = _listed(statement["Resource"])
    return kind is None or "*" in resources or any(f":{kind}/" in r for r in resources)


def test_iam_policy_scopes_creation_and_management_to_the_owner():
    policy = json.loads((ROOT / "iam" / "launch-policy.json").read_text())
    statements = policy["Statement"]
    for action, kinds in CREATES.items():
        for kind in kinds:
            granting = [s for s in statements if _grants(s, action, kind)]
            assert granting, (action, kind)
            for statement in granting:
                equals = statement.get("Condition", {}).get("StringEquals", {})
                assert equals.get("aws:RequestTag/owner") == "${aws:PrincipalArn}", \
                    (statement["Sid"], action, kind)
    for action in MANAGES:
        granting = [s for s in statements if _grants(s, action)]
        assert granting, action
        for statement in granting:
            equals = statement.get("Condition", {}).get("StringEquals", {})
            assert "${aws:PrincipalArn}" in (equals.get("aws:ResourceTag/owner"),
                                             equals.get("aws:RequestTag/owner")), statement["Sid"]
    tags = [s for s in statements if _grants(s, "ec2:CreateTags")]
    for statement in tags:
        equals = statement["Condition"]["StringEquals"]
        assert "ec2:CreateAction" in equals
        assert equals["aws:RequestTag/owner"] == "${aws:PrincipalArn}"
    manage = next(s for s in statements if s["Sid"] == "ManageOnlyOurResources")
    assert manage["Condition"]["StringEquals"]["aws:ResourceTag/owner"] == "${aws:PrincipalArn}"


def test_the_user_data_protection_policy_denies_reading_others_user_data():
    policy = json.loads((ROOT / "iam" / "protect-user-data-policy.json").read_text())
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Action"] == "ec2:DescribeInstanceAttribute"
    assert deny["Condition"]["StringNotEquals"]["aws:ResourceTag/owner"] == \
        "${aws:PrincipalArn}"
    assert deny["Condition"]["Null"]["aws:ResourceTag/imagebake:cluster"] == "false"
