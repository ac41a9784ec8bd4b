"""provision/90-cleanup.sh, run for real in a throw-away container of the offline base
image: every secret and machine-specific file planted beforehand is gone afterwards,
what merely mentions a key stays, and the script's own scan passes. (The image tests in
tests/images check baked images; this needs no bake and no --hosts.)"""

from __future__ import annotations

import shlex
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import docker_ok

ROOT = Path(__file__).resolve().parents[2]
BASE = "imagebake/base:bookworm"

SECRETS = [
    "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
    "/etc/ssh/ssh_host_rsa_key", "/root/.ssh/id_ed25519", "/root/.ssh/authorized_keys",
    "/home/disco/.ssh/authorized_keys", "/home/disco/.erlang.cookie",
    "/root/.erlang.cookie", "/root/.bash_history", "/home/disco/.python_history",
    "/opt/app/deploy.pem",  # a PEM private key under an innocent name
    "/var/lib/imagebake/spec.json", "/var/lib/imagebake/state.json",
    "/var/lib/dbus/machine-id", "/var/lib/cloud/instance/user-data.txt",
    "/tmp/imagebake/provision/lib.sh",  # what Packer uploaded
]
KEPT = ["/usr/bin/ssh-keygen",  # contains the PEM header string, is not a key
        "/srv/notes.txt"]

PLANT = r"""
set -e
mkdir -p /etc/ssh /root/.ssh /home/disco/.ssh /opt/app /var/lib/imagebake /var/lib/dbus \
    /var/lib/cloud/instance /srv
ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
ssh-keygen -q -t rsa -b 1024 -N '' -f /etc/ssh/ssh_host_rsa_key
ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519
ssh-keygen -q -t rsa -b 1024 -m PEM -N '' -f /opt/app/deploy.pem
cp /root/.ssh/id_ed25519.pub /root/.ssh/authorized_keys
cp /root/.ssh/id_ed25519.pub /home/disco/.ssh/authorized_keys
echo cookie-secret > /home/disco/.erlang.cookie
echo cookie-secret > /root/.erlang.cookie
echo 'cat /var/lib/imagebake/spec.json' > /root/.bash_history
echo 'import os' > /home/disco/.python_history
echo '{"token": "secret-token"}' > /var/lib/imagebake/spec.json
echo '{}' > /var/lib/imagebake/state.json
echo 0123456789abcdef0123456789abcdef > /etc/machine-id
echo 0123456789abcdef0123456789abcdef > /var/lib/dbus/machine-id
echo '{"token": "secret-token"}' > /var/lib/cloud/instance/user-data.txt
printf 'how to write one:\n-----BEGIN RSA PRIVATE KEY-----\n(not here)\n' > /srv/notes.txt
"""


@pytest.fixture
def container():
    if not docker_ok():
        pytest.skip("no running Docker daemon")
    if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True).returncode:
        pytest.skip(f"{BASE} not built (`invoke base-image`)")
    name = f"imagebake-cleanup-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, "--label", "imagebake.test=1",
                    "--entrypoint", "sleep", BASE, "infinity"], check=True,
                   capture_output=True)
    try:
        subprocess.run(["docker", "exec", name, "mkdir", "-p", "/tmp/imagebake"], check=True)
        subprocess.run(["docker", "cp", str(ROOT / "provision"), f"{name}:/tmp/imagebake/"],
                       check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def sh(container: str, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container, "bash", "-c", script],
                          capture_output=True, text=True, timeout=600)


def test_cleanup_removes_every_secret_and_machine_file(container):
    planted = sh(container, PLANT)
    assert planted.returncode == 0, planted.stderr
    present = sh(container, "ls -d " + " ".join(map(shlex.quote, SECRETS + KEPT)))
    assert present.returncode == 0, present.stderr  # all planted

    run = sh(container, "IMAGEBAKE_DIR=/tmp/imagebake IMAGEBAKE_ROLE=node "
                        "IMAGEBAKE_TARGET=docker bash "
                        "/tmp/imagebake/provision/90-cleanup.sh")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "secret scan clean" in run.stdout + run.stderr

    left = [p for p in SECRETS if sh(container, f"test -e {shlex.quote(p)}").returncode == 0]
    assert left == []
    assert sh(container, "test -e /root/.ssh || test -e /tmp/imagebake").returncode != 0
    assert sh(container, "cat /etc/machine-id").stdout == ""  # emptied, not removed
    kept = [p for p in KEPT if sh(container, f"test -e {shlex.quote(p)}").returncode == 0]
    assert kept == KEPT
