"""imagebake/clients/aws.py: every AWS failure becomes one line that says what to do,
and a session without credentials or a region is refused before any call."""

from __future__ import annotations

import boto3
import botocore.exceptions
import pytest

from imagebake.clients import aws
from imagebake.errors import ImagebakeError


def client_error(code: str, message: str = "m") -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": message}},
                                           "RunInstances")


@pytest.mark.parametrize("exc, kw, says", [
    (client_error("InsufficientInstanceCapacity"), {"instance_type": "c5.large",
                                                     "az": "eu-west-1a"},
     "AWS has no capacity for c5.large in eu-west-1a right now"),
    (client_error("InsufficientInstanceCapacity"), {"instance_type": "c5.large", "spot": True},
     "spot request refused for c5.large"),
    (client_error("VcpuLimitExceeded"), {}, "quota is too low"),
    (client_error("UnauthorizedOperation"), {}, "iam/launch-policy.json"),
    (client_error("OptInRequired"), {"region": "af-south-1"}, "region af-south-1 is not enabled"),
    (client_error("RequestLimitExceeded"), {}, "AWS throttled the API while starting"),
    (botocore.exceptions.NoCredentialsError(), {}, aws.NO_CREDENTIALS),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="https://x"), {"region": "r-1"},
     "cannot reach the EC2 endpoint while starting"),
    (ValueError("boom\nsecond line"), {}, "starting failed: boom"),
])
def test_aws_errors_are_one_actionable_line(exc, kw, says):
    text = aws.explain(exc, "starting", **kw)
    assert says in text and "\n" not in text


def test_no_credentials_or_no_region_is_refused_before_any_call(monkeypatch):
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)

    def factory(region, profile):
        return boto3.Session(region_name=region, profile_name=profile)

    with pytest.raises(ImagebakeError, match="no AWS credentials found"):
        aws.make_session("eu-west-1", None, factory)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(ImagebakeError, match="no AWS region configured"):
        aws.make_session(None, None, factory)
    assert aws.make_session("eu-west-1", None, factory).region_name == "eu-west-1"


def test_one_line_and_error_code():
    assert aws.one_line(ValueError("a\nb")) == "a" and aws.one_line(ValueError()) == "ValueError"
    assert aws.error_code(client_error("Throttling")) == "Throttling"
    assert aws.error_code(ValueError()) == ""
