"""`invoke verify`: the testinfra suite (tests/images/) on baked images.

docker: one throw-away container per role from imagebake/<role>:latest, its
entrypoint replaced by `sleep infinity` (labelled imagebake.verify=1, removed
afterwards even on failure), checked over testinfra's docker:// backend.
aws: an instance booted from the AMI (--host), or, without --host, the AMIs of
build/images.json booted as a one-slave cluster, checked over ssh:// (sudo).
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


def _pytest(hosts: str, role: str | None, extra: list[str] | None = None) -> int:
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
            codes.append(_pytest(f"docker://{name}", role))
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


def verify_aws(ami: str | None, host: str | None) -> int:
    if not host:
        if ami:
            raise ImagebakeError("--ami goes with --host; without both, verify boots the "
                                 "AMIs in build/images.json itself")
        return verify_aws_boot()
    role = _ami_role(ami) if ami else None
    return _pytest(f"ssh://{host}", role, ["--sudo"])


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


def verify_aws_boot(region: str | None = None) -> int:
    """Boot the baked AMIs as a one-slave cluster (so each gets its agent and
    pinned host key), run the suite on master and node over ssh, tear it all down."""
    import tempfile

    from .. import state, targets
    from ..clients import aws
    from ..targets.aws.hostkeys import known_hosts_path

    client = aws.ec2(aws.make_session(region))
    target = targets.get("aws")
    tag = f"verify{os.getpid() % 100000}"
    key_name = f"imagebake-{tag}"
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "id_ed25519"
        material = client.create_key_pair(KeyName=key_name, KeyType="ed25519")["KeyMaterial"]
        key.touch(mode=0o600)
        key.write_text(material)
        try:
            record = target.launch(name=tag, slaves=1, region=region, key_name=key_name,
                                   ttl="2h")
            config = Path(tmp) / "ssh_config"
            config.write_text(SSH_CONFIG.format(
                master=record["master"]["public_ip"], node=record["nodes"][0]["private_ip"],
                key=key, known=known_hosts_path(tag)))
            extra = ["--sudo", f"--ssh-config={config}"]
            codes = [_pytest(f"ssh://{role}", role, extra) for role in ROLES]
        finally:
            print(target.destroy(tag, state.load(tag)), file=sys.stderr)
            client.delete_key_pair(KeyName=key_name)
    return next((c for c in codes if c), 0)


def verify(target: str = "docker", ami: str | None = None, host: str | None = None) -> int:
    if target == "docker":
        if ami or host:
            raise ImagebakeError("--ami and --host are for --target aws")
        return verify_docker()
    if target == "aws":
        return verify_aws(ami, host)
    if target == "qemu":
        raise ImagebakeError("qemu target not implemented yet for verify")
    raise ImagebakeError(f"unknown target {target!r}: choose docker or aws")
