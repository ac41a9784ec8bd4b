"""Fixtures for the AWS target: one moto server (ThreadedMotoServer on 127.0.0.1, a free
port) for the session, reset before every test; real boto3 HTTP calls go to it through
AWS_ENDPOINT_URL. Nothing here patches boto3: tests that need to count or fail calls
hand the code a session factory that registers botocore event hooks.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import tempfile
import threading
import urllib.request
from pathlib import Path

import boto3
import pytest

from .aws_helpers import REGION, Calls, register_ami

# Canonical's trusty images for resolve_source_ami, loaded by moto at import time
# (MOTO_AMIS_PATH must be set before moto's EC2 models are imported).
_AMIS_DIR = Path(tempfile.mkdtemp(prefix="imagebake-moto-amis-"))
_IMAGE_COMMON = {"state": "available", "public": True, "architecture": "x86_64",
                 "virtualization_type": "hvm", "root_device_type": "ebs", "hypervisor": "xen",
                 "root_device_name": "/dev/sda1", "platform": None}
_TRUSTY = "ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-amd64-server-"


def _image(number: int, owner: str, location: str, name: str, date: str, about: str) -> dict:
    return {**_IMAGE_COMMON, "ami_id": f"ami-0aaaaaaaaaaaaaa{number:02d}", "owner_id": owner,
            "image_location": location, "name": name,
            "creation_date": f"{date}T12:00:00.000Z", "description": about}


CANONICAL_IMAGES = [
    _image(1, "099720109477", "amazon/old", _TRUSTY + "20190514", "2019-05-14", "trusty old"),
    _image(2, "099720109477", "amazon/newest", _TRUSTY + "20191107", "2019-11-07",
           "trusty newest"),
    _image(3, "099720109477", "amazon/xenial",
           "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-20210429", "2021-04-29",
           "xenial"),
    _image(4, "111111111111", "someone/else", _TRUSTY + "20991231", "2099-12-31",
           "not Canonical"),
    # Debian's own images (the debian-12 base)
    _image(5, "136693071363", "amazon/debian-12-old", "debian-12-amd64-20240102-1614",
           "2024-01-02", "Debian 12 old"),
    _image(6, "136693071363", "amazon/debian-12-new", "debian-12-amd64-20250610-2136",
           "2025-06-10", "Debian 12 newest"),
    _image(7, "136693071363", "amazon/debian-13", "debian-13-amd64-20250814-2204",
           "2025-08-14", "Debian 13"),
    _image(8, "111111111111", "someone/debian", "debian-12-amd64-20991231-0000",
           "2099-12-31", "not Debian's"),
    # bases a user may pass as --var source_ami (IMDSv2 default decided from the name)
    _image(9, "099720109477", "amazon/focal",
           "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-20240501", "2024-05-01",
           "focal"),
    _image(10, "099720109477", "amazon/jammy",
           "ubuntu/images/hvm-ssd-gp3/ubuntu-jammy-22.04-amd64-server-20240601", "2024-06-01",
           "jammy"),
    _image(11, "099720109477", "amazon/bionic",
           "ubuntu/images/hvm-ssd/ubuntu-bionic-18.04-amd64-server-20230531", "2023-05-31",
           "bionic"),
    _image(12, "136693071363", "amazon/debian-10", "debian-10-amd64-20240104-1616",
           "2024-01-04", "Debian 10 (20240104-1616)"),
]
(_AMIS_DIR / "amis.json").write_text(json.dumps(CANONICAL_IMAGES))
os.environ.setdefault("MOTO_AMIS_PATH", str(_AMIS_DIR / "amis.json"))

CALLER_ADDRESS = "1.2.3.4"  # what the fake checkip answers
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254 for credentials
}


@pytest.fixture(scope="session")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class _CheckIp(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = (CALLER_ADDRESS + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def checkip_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CheckIp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture
def aws_env(moto_endpoint, checkip_url, tmp_path, monkeypatch):
    """A clean moto account and environment; returns the env dict for subprocesses."""
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).read()
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    env = dict(FAKE_ENV)
    env.update({
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "IMAGEBAKE_STATE_DIR": str(tmp_path / "state"),
        "IMAGEBAKE_IMAGES_JSON": str(tmp_path / "images.json"),
        "IMAGEBAKE_CHECKIP_URL": checkip_url,
    })
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def ec2(aws_env):
    return boto3.client("ec2", region_name=REGION)


@pytest.fixture
def amis(ec2, aws_env):
    """A master and a node AMI in moto, recorded in build/images.json (the test's copy)."""
    out = {"master": register_ami(ec2, "master"), "node": register_ami(ec2, "node")}
    Path(aws_env["IMAGEBAKE_IMAGES_JSON"]).write_text(json.dumps(
        {"aws": {role: {"id": ami, "region": REGION} for role, ami in out.items()}}))
    return out


@pytest.fixture
def calls():
    return Calls()
