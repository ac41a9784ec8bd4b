"""Starting, finding, waiting for and removing a cluster's instances (by tag)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions
from botocore.config import Config
from botocore.parsers import ResponseParserError

from ...clients import aws

CLUSTER_TAG = "imagebake:cluster"
ROLE_TAG = "imagebake:role"
OWNER_TAG = "owner"  # the launching principal's ARN as aws:PrincipalArn holds it
LIVE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"]
OPEN_SPOT_STATES = ["open", "active", "disabled"]
WAIT_RUNNING = {"Delay": 5, "MaxAttempts": 120}      # up to 10 minutes
WAIT_TERMINATED = {"Delay": 5, "MaxAttempts": 120}
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10,
                  read_timeout=30)


def tag_list(cluster: str, role: str, owner: str, created: str, ttl: str | None) -> list[dict]:
    values = {
        CLUSTER_TAG: cluster,
        ROLE_TAG: role,
        "Name": f"imagebake-{cluster}-{role}",
        OWNER_TAG: owner[:256],  # EC2's limit for a tag value
        "created": created,
        "ttl": ttl or "none",
    }
    return [{"Key": k, "Value": v} for k, v in values.items()]


def cluster_filter(cluster: str) -> dict:
    return {"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]}


def owner_filter(owner: str) -> dict:
    return {"Name": f"tag:{OWNER_TAG}", "Values": [owner[:256]]}


def scope(cluster: str, owner: str) -> list[dict]:
    """The filters naming one principal's cluster: a cluster name is per owner, so
    another principal's resources with the same name are never found, let alone removed."""
    if not owner:
        raise ValueError("internal error: a cluster filter needs the owner")
    return [cluster_filter(cluster), owner_filter(owner)]


def run_args(*, ami: str, instance_type: str, count: int, subnet: str, group: str,
             user_data: str, imdsv2: bool, tags: list[dict], key_name: str | None,
             spot: bool, placement_group: str | None) -> dict[str, Any]:
    """RunInstances parameters for COUNT identical instances (one call)."""
    resource_types = ["instance", "volume", "network-interface"]
    if spot:
        resource_types.append("spot-instances-request")
    args: dict[str, Any] = {
        "ImageId": ami,
        "InstanceType": instance_type,
        "MinCount": count,
        "MaxCount": count,
        "UserData": user_data,
        "NetworkInterfaces": [{
            "DeviceIndex": 0, "SubnetId": subnet, "Groups": [group],
            "AssociatePublicIpAddress": True, "DeleteOnTermination": True,
        }],
        "MetadataOptions": {
            "HttpTokens": "required" if imdsv2 else "optional",
            "HttpPutResponseHopLimit": 1,
            "HttpEndpoint": "enabled",
        },
        "InstanceInitiatedShutdownBehavior": "terminate",
        "TagSpecifications": [{"ResourceType": t, "Tags": tags} for t in resource_types],
    }
    if key_name:
        args["KeyName"] = key_name
    if placement_group:
        args["Placement"] = {"GroupName": placement_group}
    if spot:
        args["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time",
                            "InstanceInterruptionBehavior": "terminate"},
        }
    return args


def describe(client: Any, ids: list[str] | None = None, cluster: str | None = None,
             states: list[str] | None = None, owner: str | None = None) -> list[dict]:
    """Instances by ids and/or OWNER's cluster tag, in one paginated DescribeInstances."""
    kwargs: dict[str, Any] = {}
    filters = []
    if cluster:
        filters.extend(scope(cluster, owner or ""))
    if states:
        filters.append({"Name": "instance-state-name", "Values": states})
    if filters:
        kwargs["Filters"] = filters
    if ids:
        kwargs["InstanceIds"] = ids
    out = []
    for page in client.get_paginator("describe_instances").paginate(**kwargs):
        for reservation in page["Reservations"]:
            out.extend(reservation["Instances"])
    return out


def wait_running(client: Any, ids: list[str]) -> None:
    client.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=WAIT_RUNNING)


def brief(instance: dict) -> dict:
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    return {
        "id": instance["InstanceId"],
        "role": tags.get(ROLE_TAG),
        "state": instance["State"]["Name"],
        "private_ip": instance.get("PrivateIpAddress"),
        "public_ip": instance.get("PublicIpAddress"),
        "az": instance.get("Placement", {}).get("AvailabilityZone"),
        "subnet": instance.get("SubnetId"),
        "instance_type": instance.get("InstanceType"),
        "spot": instance.get("InstanceLifecycle") == "spot",
        "state_reason": (instance.get("StateReason") or {}).get("Message"),
    }


@dataclass
class Removal:
    instances: list[str] = field(default_factory=list)
    spot_requests: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    placement_groups: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.instances or self.spot_requests or self.groups
                    or self.placement_groups)

    def describe(self) -> str:
        parts = []
        if self.instances:
            parts.append(f"{len(self.instances)} instance(s) terminated")
        if self.spot_requests:
            parts.append(f"{len(self.spot_requests)} spot request(s) cancelled")
        if self.groups:
            parts.append(f"security group {', '.join(self.groups)} deleted")
        if self.placement_groups:
            parts.append(f"placement group {', '.join(self.placement_groups)} deleted")
        return "; ".join(parts)


def terminate(client: Any, ids: list[str]) -> None:
    """Terminate IDS and wait until they are gone (instance_terminated waiter)."""
    if not ids:
        return
    client.terminate_instances(InstanceIds=ids)
    client.get_waiter("instance_terminated").wait(InstanceIds=ids,
                                                  WaiterConfig=WAIT_TERMINATED)


def _delete_group(client: Any, group_id: str) -> None:
    """Delete a security group; network interfaces of just-terminated instances may
    hold it for a short while, so DependencyViolation is retried with a backoff."""
    delay = 1.0
    deadline = time.monotonic() + 180
    while True:
        try:
            client.delete_security_group(GroupId=group_id)
            return
        except botocore.exceptions.ClientError as exc:
            code = aws.error_code(exc)
            if code == "InvalidGroup.NotFound":
                return
            if code != "DependencyViolation" or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 15.0)


def remove_cluster(session: Any, region: str, cluster: str, *, owner: str,
                   placement_group: str | None = None, search_placement: bool = True,
                   only_ids: list[str] | None = None) -> Removal:
    """Terminate, cancel and delete everything tagged imagebake:cluster=CLUSTER and
    owner=OWNER (another principal's cluster of the same name is left alone).

    With ONLY_IDS, terminate just those instances (a failed grow) and keep the rest.
    """
    client = aws.ec2(session, region)
    done = Removal()
    mine = scope(cluster, owner)
    live: list[str] = []
    if only_ids is None or only_ids:  # never an unfiltered describe for an empty list
        live = [i["InstanceId"] for i in describe(client, ids=only_ids, cluster=cluster,
                                                  owner=owner, states=LIVE_STATES)]
    spot_ids: list[str] = []
    if only_ids is None:
        pages = client.get_paginator("describe_spot_instance_requests").paginate(
            Filters=[*mine, {"Name": "state", "Values": OPEN_SPOT_STATES}])
        for page in pages:
            spot_ids.extend(r["SpotInstanceRequestId"] for r in page["SpotInstanceRequests"])
    if spot_ids:
        client.cancel_spot_instance_requests(SpotInstanceRequestIds=spot_ids)
        done.spot_requests = spot_ids
    terminate(client, live)
    done.instances = live
    if only_ids is not None:
        return done
    groups = client.describe_security_groups(Filters=mine)["SecurityGroups"]
    for group in groups:
        _delete_group(client, group["GroupId"])
        done.groups.append(group["GroupId"])
    names = [placement_group] if placement_group else []
    if search_placement and not placement_group:
        try:
            found = session.client("ec2", region_name=region, config=NO_RETRY) \
                .describe_placement_groups(Filters=mine)["PlacementGroups"]
            names = [p["GroupName"] for p in found]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError,
                ResponseParserError) as exc:
            done.notes.append(f"placement groups not checked: {type(exc).__name__}")
    for name in names:
        try:
            client.delete_placement_group(GroupName=name)
            done.placement_groups.append(name)
        except botocore.exceptions.ClientError as exc:
            if aws.error_code(exc) != "InvalidPlacementGroup.Unknown":
                raise
    return done
