"""Helpers shared by the AWS tests (imported by name: tests/aws is on sys.path)."""

from __future__ import annotations

import boto3

REGION = "us-east-1"


def register_ami(client, role: str, imdsv2: str | None = None, name: str | None = None) -> str:
    image = client.register_image(
        Name=name or f"imagebake-{role}-test", RootDeviceName="/dev/sda1",
        Architecture="x86_64", VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}],
    )["ImageId"]
    tags = [{"Key": "imagebake:role", "Value": role}]
    if imdsv2:
        tags.append({"Key": "imagebake:imdsv2", "Value": imdsv2})
    client.create_tags(Resources=[image], Tags=tags)
    return image


class Calls:
    """EC2/STS calls seen through botocore's before-call hooks."""

    def __init__(self):
        self.seen: list[tuple[str, dict]] = []
        self.fail: dict[tuple[str, int], BaseException] = {}
        self.answer: dict[str, dict] = {}
        self.sent: list[str] = []

    def named(self, op: str) -> list[dict]:
        return [params for name, params in self.seen if name == op]

    def record(self, model, params, **_):
        """before-parameter-build: the API parameters as the code passed them."""
        self.seen.append((model.name, dict(params)))

    def hook(self, model, **_):
        """before-call: count every request; fail or answer the chosen ones."""
        self.sent.append(model.name)
        nth = self.sent.count(model.name)
        exc = self.fail.get((model.name, nth))
        if exc is not None:
            raise exc
        if model.name in self.answer:
            from botocore.awsrequest import AWSResponse

            return AWSResponse("http://stub", 200, {}, None), self.answer[model.name]
        return None

    def factory(self, region, profile):
        session = boto3.Session(region_name=region, profile_name=profile)
        session.events.register("before-parameter-build.ec2.*", self.record)
        session.events.register("before-call.ec2.*", self.hook)
        return session


def client_error(code: str, op: str = "RunInstances", message: str = "injected"):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message}}, op)


def tagged(ec2, cluster: str) -> dict:
    """What is left with the cluster tag: live instances, groups, open spot requests."""
    flt = [{"Name": "tag:imagebake:cluster", "Values": [cluster]}]
    instances = [
        i for r in ec2.describe_instances(Filters=flt)["Reservations"] for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    groups = ec2.describe_security_groups(Filters=flt)["SecurityGroups"]
    spot = [s for s in ec2.describe_spot_instance_requests(Filters=flt)["SpotInstanceRequests"]
            if s["State"] in ("open", "active")]
    return {"instances": instances, "groups": groups, "spot": spot}
