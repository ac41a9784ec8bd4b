"""sshfiles.py: known_hosts and authorized_keys keep unrelated lines, replace only our
block, and are rewritten only when they change."""

import os

from imagebake.agent import fsutil, sshfiles
from imagebake.agent.keys import disco_ssh_dir

from .helpers import agent_log

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAA"


KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBB"


def test_merge_keeps_unrelated_lines_and_is_idempotent():
    existing = f"# mine\nssh-rsa AAAAother me@laptop\n{KEY_A}\n"
    once = sshfiles.merge_block(existing, [KEY_A, KEY_B])
    twice = sshfiles.merge_block(once, [KEY_A, KEY_B])
    assert once == twice
    lines = once.splitlines()
    assert lines.count(KEY_A) == 1  # the loose duplicate was folded into the block
    assert "ssh-rsa AAAAother me@laptop" in lines and "# mine" in lines
    assert lines[-1] == sshfiles.END


def test_merge_replaces_the_block():
    first = sshfiles.merge_block("", [KEY_A])
    second = sshfiles.merge_block(first, [KEY_B])
    assert KEY_A not in second and KEY_B in second


def _has_disco():
    import pwd
    try:
        pwd.getpwnam("disco")
        return True
    except KeyError:
        return False


def test_write_ssh_files_twice_same_bytes(agent_ctx):
    ctx = agent_ctx()
    ssh = ctx.disco_path(".ssh")
    os.makedirs(ssh)
    with open(os.path.join(ssh, "authorized_keys"), "w") as handle:
        handle.write("ssh-ed25519 AAAAunrelated ops@bastion\n")
    assert sshfiles.write_authorized_keys(ctx, [KEY_A + " disco@master"])
    first = open(os.path.join(ssh, "authorized_keys")).read()
    assert not sshfiles.write_authorized_keys(ctx, [KEY_A + " disco@master"])
    assert open(os.path.join(ssh, "authorized_keys")).read() == first
    assert "ops@bastion" in first and first.count(KEY_A) == 1
    assert oct(os.stat(os.path.join(ssh, "authorized_keys")).st_mode & 0o777) == "0o600"
    assert oct(os.stat(ssh).st_mode & 0o777) == "0o700"
    # chown to disco is skipped with a note when the user (or root) is missing
    if os.geteuid() != 0 or not _has_disco():
        assert any("chown" in note for note in ctx.runner.notes)


def test_known_hosts_line_drops_comment():
    line = sshfiles.known_hosts_line(["node01", "10.0.0.11"], KEY_A + " root@node01")
    assert line == "node01,10.0.0.11 " + KEY_A


def test_an_oversized_known_hosts_is_rewritten_with_the_managed_block_only(agent_ctx):
    """A planted huge known_hosts does not stop joins: the agent does not read it and
    writes the managed block alone (issue 21 N3)."""
    ctx = agent_ctx()
    path = os.path.join(disco_ssh_dir(ctx), "known_hosts")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"planted " * (fsutil.MAX_READ // 8 + 1))
    line = sshfiles.known_hosts_line(["node01", "10.0.0.11"], KEY_A)
    with agent_log() as lines:
        assert sshfiles.write_known_hosts(ctx, [line])
    with open(path) as handle:
        assert handle.read() == sshfiles.merge_block(None, [line])
    assert [text for text in lines if "not read" in text]
