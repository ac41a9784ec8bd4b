"""boto3 sessions and the mapping of AWS errors to one actionable line.

Every AWS call in imagebake goes through a session made here. A caller (a test,
the launch benchmark) may hand in its own ``session_factory`` to attach botocore
event hooks; nothing here patches boto3.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

import boto3
import botocore.exceptions
from botocore.config import Config

from ..errors import ImagebakeError

SessionFactory = Callable[[Optional[str], Optional[str]], boto3.Session]

# Standard retries (throttling, 5xx) with a small budget: a launch must fail
# fast and clean up, not hang.
CLIENT_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"},
                       connect_timeout=10, read_timeout=60)

AWS_CALL_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)
REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}")
NO_CREDENTIALS = "no AWS credentials found: run `aws configure` or set AWS_PROFILE"


def default_session_factory(region: str | None, profile: str | None) -> boto3.Session:
    return boto3.Session(region_name=region, profile_name=profile)


def make_session(region: str | None = None, profile: str | None = None,
                 factory: SessionFactory | None = None) -> boto3.Session:
    """A session with credentials and a region, or an ImagebakeError saying what to do."""
    try:
        session = (factory or default_session_factory)(region, profile)
    except botocore.exceptions.ProfileNotFound:
        raise ImagebakeError(
            f"AWS profile {profile!r} not found in your AWS config: "
            "check `aws configure list-profiles`") from None
    try:
        credentials = session.get_credentials()
    except botocore.exceptions.BotoCoreError as exc:
        raise ImagebakeError(f"cannot load AWS credentials: {one_line(exc)}") from None
    if credentials is None:
        raise ImagebakeError(NO_CREDENTIALS)
    if not session.region_name:
        raise ImagebakeError(
            "no AWS region configured: pass --region or set AWS_DEFAULT_REGION")
    return session


def ec2(session: boto3.Session, region: str | None = None) -> Any:
    return session.client("ec2", region_name=region or session.region_name,
                          config=CLIENT_CONFIG)


def sts(session: boto3.Session) -> Any:
    return session.client("sts", region_name=session.region_name, config=CLIENT_CONFIG)


def one_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: botocore.exceptions.ClientError) -> str:
    return one_line(exc.response.get("Error", {}).get("Message", "") or str(exc))


CAPACITY_CODES = {"InsufficientInstanceCapacity", "InsufficientHostCapacity",
                  "InsufficientCapacity", "UnfulfillableCapacity"}
SPOT_CODES = {"MaxSpotInstanceCountExceeded", "SpotMaxPriceTooLow",
              "InsufficientInstanceCapacity", "UnfulfillableCapacity",
              "SpotInstanceRequestLimitExceeded", "InvalidSpotInstanceRequestID.NotFound"}
AUTH_CODES = {"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId",
              "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException",
              "ExpiredToken", "RequestExpired", "UnrecognizedClientException"}


def explain(exc: BaseException, doing: str, *, instance_type: str | None = None,
            az: str | None = None, spot: bool = False, region: str | None = None) -> str:
    """One actionable line for an AWS failure while DOING something."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return NO_CREDENTIALS
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return (f"cannot reach the EC2 endpoint while {doing}: check your network, "
                f"the region{f' {region}' if region else ''} and AWS_ENDPOINT_URL")
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return f"invalid request while {doing}: {one_line(exc)}"
    if not isinstance(exc, botocore.exceptions.ClientError):
        return f"{doing} failed: {one_line(exc)}"
    code = error_code(exc)
    message = error_message(exc)
    where = f" in {az}" if az else ""
    what = instance_type or "this instance type"
    if spot and code in SPOT_CODES:
        return (f"spot request refused for {what}{where} ({code}: {message}): retry later, "
                "without --spot, or with another --instance-type or a --subnet in another "
                "zone")
    if code in CAPACITY_CODES:
        return (f"AWS has no capacity for {what}{where} right now ({code}): retry later, "
                "or pass another --instance-type or a --subnet in another zone")
    if code in ("InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded"):
        return (f"your account's instance/vCPU quota is too low for this launch ({code}): "
                "lower --slaves or request a quota increase (Service Quotas, EC2)")
    if code == "Unsupported":
        return (f"{what} is not offered{where} ({message}): pass another --instance-type "
                "or a --subnet in another zone")
    if code in ("InvalidInstanceType",) or (code == "InvalidParameterValue"
                                             and "instance type" in message.lower()):
        return f"invalid instance type {what}: see `aws ec2 describe-instance-types`"
    if code in AUTH_CODES:
        return (f"AWS refused {doing} ({code}): check your credentials and that your "
                "IAM user has the permissions in iam/launch-policy.json")
    if code == "OptInRequired":
        return (f"region{f' {region}' if region else ''} is not enabled for this account: "
                "enable it in the AWS console or pick another --region")
    if code in ("RequestLimitExceeded", "Throttling", "ThrottlingException"):
        return f"AWS throttled the API while {doing}: wait a minute and retry"
    if code == "VPCIdNotSpecified" or "default VPC" in message:
        return (f"no default VPC in {region or 'this region'}: pass --subnet "
                "with a subnet of one of your VPCs")
    return f"{doing} failed: {code}: {message}"
