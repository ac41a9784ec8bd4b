"""Fast checks of the QEMU target's pure parts (no VM, no root): run in the fast suite."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from imagebake.bake import qemu_inputs, records
from imagebake.bake.base import qemu as qemu_base
from imagebake.clients import nocloud as seed
from imagebake.targets.qemu import netns

ROOT = Path(__file__).resolve().parents[2]


def test_tap_names_fit_ifnamsiz_and_differ_per_cluster():
    names = {netns.tap_name(c, i) for c in ("a", "b", "x" * 20) for i in (0, 1, 64)}
    assert len(names) == 9
    assert all(len(n) <= 15 for n in names)


def test_static_network_config_is_version_1_with_the_mac():
    config = json.loads(seed.static_network("52:54:00:00:00:01", "10.77.0.2", 24, "10.77.0.2"))
    nic = config["config"][0]
    assert config["version"] == 1 and nic["mac_address"] == "52:54:00:00:00:01"
    assert nic["subnets"][0]["address"] == "10.77.0.2/24"


def test_bake_login_is_a_locked_key_only_sudo_user():
    text = qemu_inputs.user_data("imagebake-bake-0123abcd", "ssh-ed25519 AAAA test")
    assert text.startswith("#cloud-config\n")
    assert "lock_passwd: true" in text and "ssh_pwauth: false" in text
    assert "- default" not in text  # the image's default user is not created at bake time


def test_recipe_hash_changes_with_the_mirror_only_when_it_changes():
    a = qemu_base.recipe_hash("http://deb.debian.org/debian")
    assert a == qemu_base.recipe_hash("http://deb.debian.org/debian")
    assert a != qemu_base.recipe_hash("http://mirror.example/debian")


def test_images_entries_take_the_qcow2_path_from_the_manifest():
    builds = {"master": {"files": [{"name": "build/qemu/master-x/imagebake-master-x.qcow2"}],
                         "custom_data": {"accelerator": "tcg", "disco_source": "none"}}}
    entry = records.qemu_entry(builds["master"], "ab" * 32)
    assert entry["id"].endswith("imagebake-master-x.qcow2") and Path(entry["id"]).is_absolute()
    assert entry["content_hash"] == "ab" * 32 and entry["accelerator"] == "tcg"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_finish_bake_script_is_shellcheck_clean():
    subprocess.run(["shellcheck", str(ROOT / "imagebake/bake/qemu-finish-bake.sh")], check=True)


@pytest.mark.skipif(not Path("/usr/bin/packer").exists(), reason="packer not installed")
def test_qemu_template_is_formatted():
    proc = subprocess.run(["/usr/bin/packer", "fmt", "-check", str(ROOT / "packer/qemu.pkr.hcl")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vm_presents_itself_as_ec2_the_way_ds_identify_checks():
    from imagebake.targets.qemu import ec2

    vmrec = {"instance_type": "t2.medium"}
    ec2.new_instance(vmrec, "{}", "required")
    argv = ec2.smbios_argv(vmrec)
    u = vmrec["smbios_uuid"]
    assert u.startswith("ec2") and argv[:2] == ["-uuid", u]
    fields = dict(f.split("=", 1) for f in argv[3].split(",")[1:])
    assert fields["serial"] == u and fields["manufacturer"] == "Amazon EC2"
    assert vmrec["instance_id"].startswith("i-0") and len(vmrec["instance_id"]) == 19


def test_qemu_user_data_is_the_aws_launchers_render():
    from imagebake.targets.aws import userdata
    from imagebake.targets.qemu import cluster

    record = {"name": "vm", "master_ip": cluster.MASTER_IP, "workers_per_node": None,
              "ttl_deadline": None, "token": "ab" * 32, "cookie": "C" * 32}
    text = cluster.node_user_data(record)
    view = {"name": "vm", "master": {"private_ip": cluster.MASTER_IP},
            "workers_per_node": None, "ttl_deadline": None, "token": "ab" * 32,
            "cookie": "C" * 32}
    assert text == userdata.render(userdata.node_spec(view))
    assert json.loads(text)["master"]["address"] == cluster.MASTER_IP


def test_base_image_leaves_the_datasource_to_ds_identify():
    assert "datasource_list" not in qemu_base.CLOUD_CFG
    assert "iptables" in qemu_base.DOCKER_BASE_PACKAGES.split(",")
