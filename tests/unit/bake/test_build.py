"""bake() and parse_vars(): bad input is one line of ImagebakeError, before any work."""

from __future__ import annotations

import json

import pytest

from imagebake import targets
from imagebake.bake import build, records, variables
from imagebake.errors import ImagebakeError
from imagebake.targets.docker import images as docker_images

DOCKER = targets.get("docker")
QEMU = targets.get("qemu")


def one_line_error(fn, *args, **kwargs):
    with pytest.raises(ImagebakeError) as exc:
        fn(*args, **kwargs)
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def test_parse_vars_ok():
    assert variables.parse_vars(["disco_source=none", "disco_ref=a=b", "subnet_id="]) == {
        "disco_source": "none", "disco_ref": "a=b", "subnet_id": ""}


@pytest.mark.parametrize("item", ["novalue", "=x", "bad key=1", "1abc=2", "k-y=1", ""])
def test_parse_vars_malformed(item):
    assert "malformed --var" in one_line_error(variables.parse_vars, [item])


def test_parse_vars_repeated():
    assert "twice" in one_line_error(variables.parse_vars, ["a=1", "a=2"])


def test_unknown_target():
    assert "unknown target" in one_line_error(targets.get, "vmware")


def test_qemu_bake_login_variables_belong_to_the_wrapper():
    # the throw-away login of a qemu bake is made per bake, never passed in
    for var in ("qemu_ssh_key", "qemu_ssh_username", "qemu_seed_dir", "qemu_accelerator"):
        message = one_line_error(QEMU.bake, variables={var: "x"})
        assert "set by imagebake itself" in message


def test_qemu_user_variables_are_declared():
    assert {"qemu_base", "qemu_memory", "qemu_disk_size"} <= set(variables.declared_variables())


def test_unknown_role():
    assert "unknown role" in one_line_error(DOCKER.bake, only="worker")


def test_unknown_variable():
    message = one_line_error(DOCKER.bake, variables={"disco_sauce": "none"})
    assert "unknown variable 'disco_sauce'" in message and "disco_source" in message


def test_wrapper_owned_variable():
    assert "set by imagebake" in one_line_error(
        DOCKER.bake, variables={"content_hash": "x"})


def test_missing_packer(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "packer not found" in one_line_error(
        DOCKER.bake, variables={"disco_source": "none"})


def test_missing_docker(monkeypatch, tmp_path):
    (tmp_path / "packer").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "packer").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "docker" in one_line_error(
        DOCKER.bake, variables={"disco_source": "none"})


def test_missing_disco_tarball(monkeypatch, tmp_path):
    monkeypatch.setattr(docker_images, "check_base", lambda v: "sha256:x")
    monkeypatch.setattr(build.packer, "packer_bin", lambda: "/bin/true")
    assert "no such file" in one_line_error(
        DOCKER.bake, variables={"disco_source": str(tmp_path / "none.tgz")})


def test_missing_default_base_suggests_base_image(monkeypatch):
    monkeypatch.setattr("imagebake.clients.docker.require_daemon", lambda: None)
    monkeypatch.setattr(docker_images, "image_id", lambda ref: "")
    assert "invoke base-image" in one_line_error(docker_images.check_base, dict(variables.DEFAULTS))


def test_missing_other_base_never_pulls(monkeypatch):
    monkeypatch.setattr("imagebake.clients.docker.require_daemon", lambda: None)
    monkeypatch.setattr(docker_images, "image_id", lambda ref: "")
    message = one_line_error(docker_images.check_base,
                             {**variables.DEFAULTS, "docker_base": "ubuntu:14.04"})
    assert "docker pull ubuntu:14.04" in message


def test_images_json_merges_targets_and_roles(tmp_path):
    path = tmp_path / "images.json"
    records.write_images("aws", {"master": {"id": "ami-1"}}, path)
    records.write_images("docker", {"node": {"id": "imagebake/node:abc"}}, path)
    records.write_images("docker", {"master": {"id": "imagebake/master:abc"}}, path)
    data = json.loads(path.read_text())
    assert data == {"aws": {"master": {"id": "ami-1"}},
                    "docker": {"master": {"id": "imagebake/master:abc"},
                               "node": {"id": "imagebake/node:abc"}}}


def test_manifest_entries(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"last_run_uuid": "u2", "builds": [
        {"name": "master", "packer_run_uuid": "u1", "artifact_id": "old"},
        {"name": "master", "packer_run_uuid": "u2", "artifact_id": "us-east-1:ami-0abc",
         "custom_data": {"disco_source": "none", "built_at": "2024-01-01T00:00:00Z"}},
    ]}))
    built = records.read_manifest(manifest)
    entry = records.ami_entry("master", built["master"], "f" * 64, "us-east-1")
    assert entry == {"id": "ami-0abc", "region": "us-east-1", "content_hash": "f" * 64,
                     "disco_source": "none", "built_at": "2024-01-01T00:00:00Z"}
    docker_entry = records.docker_entry("node", {"artifact_id": "sha256:1"}, "e" * 64, None)
    assert docker_entry["id"] == "imagebake/node:eeeeeeeeeeee"
    assert docker_entry["image_id"] == "sha256:1"
