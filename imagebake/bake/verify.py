"""`invoke verify`: the testinfra suite (tests/images/) on baked images.

Which images and how they are reached is each target's act (Target.verify_images):
docker: one throw-away container per role from imagebake/<role>:latest, its
entrypoint replaced by `sleep infinity` (labelled imagebake.verify=1, removed
afterwards even on failure), checked over testinfra's docker:// backend (verify_docker).
aws: an instance booted from the AMI (--host, verify_host), or, without --host, the
AMIs of build/images.json booted as a one-slave cluster (the aws target boots it),
checked over ssh:// (sudo, verify_booted). This module knows nothing of instances.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..errors import ImagebakeError

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests" / "images"
ROLES = ("master", "node")


def run_suite(hosts: str, role: str | None, extra: list[str] | None = None) -> int:
    argv = [sys.executable, "-m", "pytest", str(TESTS), f"--hosts={hosts}",
            "-p", "no:cacheprovider", "-q", *(extra or [])]
    if role:
        argv.append(f"--role={role}")
    print(f"verify {role or 'image'} on {hosts}", file=sys.stderr, flush=True)
    return subprocess.call(argv, cwd=ROOT)


def _start_container(role: str) -> str:
    from ..clients.docker import docker, image_exists, require_daemon

    require_daemon()
    image = f"imagebake/{role}:latest"
    if not image_exists(image):
        raise ImagebakeError(f"{image} not found: run `invoke bake --target docker` first")
    name = f"imagebake-verify-{role}-{os.getpid()}"
    docker("run", "-d", "--name", name, "--label", "imagebake.verify=1",
           "--entrypoint", "sleep", image, "infinity")
    return name


def _remove_container(name: str) -> None:
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def verify_docker() -> int:
    codes = []
    for role in ROLES:
        name = _start_container(role)
        try:
            codes.append(run_suite(f"docker://{name}", role))
        finally:
            _remove_container(name)
    return next((c for c in codes if c), 0)


def _ami_role(ami: str) -> str | None:
    from ..clients import aws

    client = aws.ec2(aws.make_session())
    try:
        images = client.describe_images(ImageIds=[ami])["Images"]
    except Exception as exc:  # one line whatever botocore raises
        raise ImagebakeError(aws.explain(exc, f"looking up {ami}")) from None
    if not images:
        raise ImagebakeError(f"AMI {ami} not found")
    tags = {t["Key"]: t["Value"] for t in images[0].get("Tags") or []}
    return tags.get("imagebake:role")


def verify_host(host: str, ami: str | None = None) -> int:
    """The suite over ssh:// on HOST (user@address), an instance booted from AMI (its
    role from the AMI's imagebake:role tag)."""
    role = _ami_role(ami) if ami else None
    return run_suite(f"ssh://{host}", role, ["--sudo"])


SSH_CONFIG = """Host master
  HostName {master}
Host node
  HostName {node}
  ProxyJump master
Host *
  User ubuntu
  IdentityFile {key}
  IdentitiesOnly yes
  UserKnownHostsFile {known}
  StrictHostKeyChecking yes
"""


def verify_booted(master: str, node: str, key: Path, known_hosts: Path, folder: Path) -> int:
    """The suite on a booted master (MASTER: its public address) and node (NODE: its
    private address, reached through the master), over ssh with pinned host keys."""
    config = Path(folder) / "ssh_config"
    config.write_text(SSH_CONFIG.format(master=master, node=node, key=key, known=known_hosts))
    extra = ["--sudo", f"--ssh-config={config}"]
    codes = [run_suite(f"ssh://{role}", role, extra) for role in ROLES]
    return next((c for c in codes if c), 0)
