"""What an AWS launch will do, checked (AwsTarget.check_launch makes it; launch and
dryrun read it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3

from ... import state
from . import network


class AwsRecord(state.Record, total=False):
    region: str
    profile: str | None
    az: str
    subnet: str
    vpc: str
    security_group: str | None
    placement_group: str | None
    instance_type: str
    master_instance_type: str
    amis: dict[str, str]
    imdsv2: dict[str, bool]
    spot: bool
    spot_master: bool
    key_name: str | None
    allow_cidr: str
    owner: str
    ttl: str | None
    master: dict | None    # the master instance: id, private_ip, public_ip, state, az
    ids: list[str]         # every instance id, the master's first
    ready: bool
    ready_seconds: float
    launch_seconds: float
    failed: str


@dataclass
class LaunchPlan:
    """Everything a launch needs, checked; nothing created yet."""

    name: str
    count: int
    workers: int | None
    ttl: str | None
    ttl_seconds: int | None
    cidr: str
    node_type: str
    master_type: str
    key_name: str | None
    spot: bool                # the slaves are spot instances
    spot_master: bool         # the master too (its loss ends the cluster)
    placement_group: bool
    keep_on_failure: bool
    profile: str | None
    session: boto3.Session
    region: str
    client: Any
    owner: str
    amis: dict[str, str]
    images: dict[str, dict]
    where: network.Placement
    idle_stop: int | None = None  # seconds (imagebake.durations); the master agent enforces it
