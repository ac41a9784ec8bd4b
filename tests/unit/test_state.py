"""The launcher's secret files (cluster records with the join token and cookie, pinned
known_hosts): written through a fresh temp file (O_EXCL|O_NOFOLLOW, 0600) and a rename,
never through a link someone planted; the state directory is 0700 and ours (issue 13, Low)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from imagebake import files, state
from imagebake.errors import ImagebakeError
from imagebake.targets import fleet
from imagebake.targets.aws import hostkeys

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheMasterForTestsOnly000000000"


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    home = tmp_path / "state"
    monkeypatch.setenv("IMAGEBAKE_STATE_DIR", str(home))
    return home


def record(name: str = "c1") -> dict:
    return {"name": name, "target": "aws", "token": "t" * 64, "cookie": "c" * 32,
            "master": {"public_ip": "198.51.100.1", "private_ip": "10.0.0.10"}, "nodes": []}


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_save_does_not_follow_a_link_planted_at_the_temp_name(state_home, tmp_path):
    (state_home / "clusters").mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    for planted in ("c1.tmp", "c1.json.tmp", ".c1.json.tmp"):
        os.symlink(victim, state_home / "clusters" / planted)
    state.save(record())
    assert victim.read_text() == "precious\n"
    assert state.load("c1")["token"] == "t" * 64


def test_save_replaces_a_link_at_the_record_path_instead_of_writing_through_it(
        state_home, tmp_path):
    (state_home / "clusters").mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim.json"
    victim.write_text("{}\n")
    os.symlink(victim, state_home / "clusters" / "c1.json")
    state.save(record())
    assert victim.read_text() == "{}\n"
    path = state_home / "clusters" / "c1.json"
    assert not path.is_symlink() and mode(path) == 0o600


def test_record_is_0600_whatever_the_umask(state_home):
    old = os.umask(0)
    try:
        path = state.save(record())
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert mode(state_home) == 0o700 and mode(state_home / "clusters") == 0o700


def test_an_existing_loose_state_directory_is_tightened(state_home):
    (state_home / "clusters").mkdir(parents=True)
    os.chmod(state_home, 0o755)
    os.chmod(state_home / "clusters", 0o777)
    state.save(record())
    assert mode(state_home) == 0o700
    assert mode(state_home / "clusters") == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_a_state_directory_owned_by_someone_else_is_refused(state_home):
    (state_home / "clusters").mkdir(parents=True, mode=0o700)
    os.chown(state_home / "clusters", 4321, 4321)
    with pytest.raises(ImagebakeError, match="belongs to"):
        state.save(record())
    assert not (state_home / "clusters" / "c1.json").exists()


def test_no_temp_file_is_left_behind(state_home):
    state.save(record())
    state.save(record())
    assert sorted(p.name for p in (state_home / "clusters").iterdir()) == ["c1.json"]
    assert state.names() == ["c1"]


def test_known_hosts_do_not_follow_a_planted_link(state_home, tmp_path):
    state_home.mkdir(mode=0o700)
    victim = tmp_path / "authorized_keys"
    victim.write_text("mine\n")
    os.symlink(victim, state_home / "c1.known_hosts")
    rec = record()
    hostkeys.remember(rec, {"host_pubkey": HOST_KEY, "nodes": []})
    assert victim.read_text() == "mine\n"
    path = hostkeys.known_hosts_path("c1")
    assert not path.is_symlink() and mode(path) == 0o600
    assert "198.51.100.1,10.0.0.10 " + " ".join(HOST_KEY.split()[:2]) in path.read_text()


def test_write_private_refuses_nothing_it_should_write(tmp_path):
    target = tmp_path / "sub" / "secret"
    files.write_private(target, "a\n")
    files.write_private(target, b"b\n")
    assert target.read_bytes() == b"b\n" and mode(target) == 0o600
    assert mode(tmp_path / "sub") == 0o700


def test_private_dir_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ImagebakeError, match="not a directory"):
        files.private_dir(tmp_path / "f")


# ------------------------------------------------------------------ nodes: one shape
def write_raw(state_home, name: str, saved: dict) -> None:
    (state_home / "clusters").mkdir(parents=True, exist_ok=True)
    (state_home / "clusters" / f"{name}.json").write_text(json.dumps(saved))


def test_records_written_before_node_load_in_the_one_shape(state_home):
    # docker and qemu saved bare names; aws saved instance entries named by position
    write_raw(state_home, "old-docker", {"name": "old-docker", "target": "docker",
                                         "nodes": ["node01", "node03"]})
    write_raw(state_home, "old-aws", {"name": "old-aws", "target": "aws", "nodes": [
        {"id": "i-1", "private_ip": "10.0.0.11", "public_ip": None, "state": "running",
         "az": "eu-west-1a"},
        {"id": "i-2", "private_ip": "10.0.0.12", "public_ip": None, "state": "running",
         "az": "eu-west-1a"}]})
    docker = state.load("old-docker")
    assert docker["nodes"] == [{"name": "node01"}, {"name": "node03"}]
    aws = state.load("old-aws")
    assert aws["nodes"] == [
        {"name": "node01", "id": "i-1", "private_ip": "10.0.0.11", "public_ip": None,
         "state": "running", "az": "eu-west-1a"},
        {"name": "node02", "id": "i-2", "private_ip": "10.0.0.12", "public_ip": None,
         "state": "running", "az": "eu-west-1a"}]
    assert fleet.members(docker) == ["master", "node01", "node03"]
    assert fleet.members(aws) == ["master", "node01", "node02"]
    # saved again, the record is in the new shape on disk
    state.save(aws)
    on_disk = json.loads((state_home / "clusters" / "old-aws.json").read_text())
    assert [n["name"] for n in on_disk["nodes"]] == ["node01", "node02"]


def test_nodes_in_the_new_shape_load_unchanged(state_home):
    saved = {"name": "c1", "target": "aws", "nodes": [
        state.node("node01", id="i-1"), state.node("node03", id="i-3")]}
    state.save(saved)
    assert state.load("c1")["nodes"] == [{"name": "node01", "id": "i-1"},
                                         {"name": "node03", "id": "i-3"}]
    assert state.node_names(state.load("c1")) == ["node01", "node03"]


def test_pinned_keys_are_read_from_the_file_alone_never_through_a_link(tmp_path):
    path = tmp_path / "c1.known_hosts"
    files.write_private(path, f"198.51.100.1,10.0.0.10 {HOST_KEY}\n# note\n10.0.0.11 {HOST_KEY}\n")
    key = " ".join(HOST_KEY.split()[:2])
    assert files.read_known_hosts(path) == {"198.51.100.1": key, "10.0.0.10": key,
                                            "10.0.0.11": key}
    planted = tmp_path / "planted.known_hosts"
    os.symlink(path, planted)
    fifo = tmp_path / "fifo.known_hosts"
    os.mkfifo(fifo)
    for unread in (planted, fifo, tmp_path / "none.known_hosts"):
        assert files.read_private(unread) is None and files.read_known_hosts(unread) == {}
