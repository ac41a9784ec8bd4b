"""imagebake/targets/qemu/cluster.py: `status` only reads the cluster record; the host
keys the master agent's signed reply carries are pinned in the known_hosts file alone."""

from __future__ import annotations

import pytest

from imagebake import state
from imagebake.targets.qemu import cluster as qemu_cluster
from imagebake.targets.qemu import ssh as qemu_ssh
from tests.fakes import FakeAgent

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheMasterForTestsOnly000000000"
NODE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINodeHostKeyForTestsOnly0000000000000000"
EVIL_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITokenHolderKeyForTestsOnly00000000000000"
NODE_IP = "10.77.0.11"
NODE = "ip-10-77-0-11"


@pytest.fixture
def record(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEBAKE_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "vm").mkdir()
    saved = {"name": "vm", "target": "qemu", "token": "ab" * 32, "dir": str(tmp_path / "vm"),
             "master_ip": qemu_cluster.MASTER_IP, "ports": {"ssh": 2222, "join": 2990},
             "login": "debian", "nodes": [state.node(NODE)],
             "vms": {"master": {"ip": qemu_cluster.MASTER_IP}, NODE: {"ip": NODE_IP}}}
    state.save(saved)
    return state.load("vm")


def reply(*nodes: tuple[str, str]) -> dict:
    return {"type": "status_reply", "host_pubkey": HOST_KEY,
            "nodes": [{"hostname": h, "address": a, "host_pubkey": k} for h, a, k in nodes]}


def written_as(path) -> tuple[int, int]:
    """The file's inode and modification time: a save (temp file + rename) changes both,
    even when it writes the same bytes."""
    info = path.stat()
    return info.st_ino, info.st_mtime_ns


def key_only(key: str) -> list[str]:
    return [" ".join(key.split()[:2])]


def test_status_pins_host_keys_in_known_hosts_and_leaves_the_record_as_it_was(record):
    path = state.state_dir() / "clusters" / "vm.json"
    before, written = path.read_bytes(), written_as(path)
    assert qemu_ssh.host_keys(record, "master") == [] and qemu_ssh.host_keys(record, NODE) == []
    # a token holder claims the master's address for its own key: never pinned there
    answer = reply((NODE, NODE_IP, NODE_KEY), ("evil", qemu_cluster.MASTER_IP, EVIL_KEY),
                   ("other", "10.77.0.99", EVIL_KEY))
    got = qemu_cluster.master_status(record, FakeAgent(lambda a, p, r: answer))
    assert got == answer
    assert path.read_bytes() == before and written_as(path) == written  # not even rewritten
    assert "master_host_key" not in record and "node_host_keys" not in record
    assert qemu_ssh.host_keys(record, "master") == key_only(HOST_KEY)
    assert qemu_ssh.host_keys(record, NODE) == key_only(NODE_KEY)
    assert set(qemu_ssh.pinned(record)) == {"[127.0.0.1]:2222", qemu_cluster.MASTER_IP,
                                            NODE_IP}


def test_a_later_reply_keeps_what_was_pinned(record):
    qemu_cluster.master_status(record, FakeAgent(lambda a, p, r: reply(
        (NODE, NODE_IP, NODE_KEY))))
    # the master answers without its key and without the node (it left the reply)
    qemu_cluster.master_status(record, FakeAgent(lambda a, p, r: {"type": "status_reply",
                                                                   "nodes": []}))
    assert qemu_ssh.host_keys(record, "master") == key_only(HOST_KEY)
    assert qemu_ssh.host_keys(record, NODE) == key_only(NODE_KEY)


def test_no_reply_pins_nothing(record):
    assert qemu_cluster.master_status(record, FakeAgent(lambda a, p, r: None)) is None
    assert not qemu_ssh.known_hosts_path(record).exists()
