"""fsutil.py: the root agent never writes or reads through a link or directory another user
("disco", played by nobody) planted; nothing outside disco's own files changes."""

import json
import os
import pwd
import stat
import subprocess
import sys

import pytest

from imagebake.agent import context as C
from imagebake.agent import disco_config, fsutil, keys, spec, sshfiles

from .helpers import COOKIE, NOBODY, ROOT, agent_log, fake_key, needs_keygen


def owned_dir(path, uid=NOBODY, mode=0o755):
    os.makedirs(path, exist_ok=True)
    os.chown(path, uid, uid)
    os.chmod(path, mode)
    return path


def disco_home(ctx):
    home = ctx.disco_home()
    owned_dir(home)
    owned_dir(os.path.join(home, ".ssh"), mode=0o700)
    return home


def _has_nobody():
    try:
        return pwd.getpwnam("nobody").pw_uid == NOBODY
    except KeyError:
        return False


@pytest.fixture
def disco_is_nobody(monkeypatch):
    if not (ROOT and _has_nobody()):
        pytest.skip("needs root and the user nobody (uid 65534)")
    monkeypatch.setattr(C, "DISCO_USER", "nobody")


def fingerprint(path):
    st = os.lstat(path)
    with open(path, "rb") as handle:
        return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), handle.read())


def root_file(path, text="root's secret\n", mode=0o640):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chown(path, 0, 0)
    os.chmod(path, mode)
    return path


@needs_keygen
def test_key_replaced_by_a_symlink_to_a_root_file(agent_ctx, disco_is_nobody):
    ctx = agent_ctx()
    home = disco_home(ctx)
    keys.ensure_disco_key(ctx, "node01")
    secret = root_file(ctx.path("/etc/shadow"))
    pub_secret = root_file(ctx.path("/etc/ssh/ssh_host_ed25519_key.pub"),
                           fake_key(1) + "\n", mode=0o644)
    before = fingerprint(secret), fingerprint(pub_secret)
    key = os.path.join(home, ".ssh", "id_ed25519")
    os.unlink(key)
    os.symlink(secret, key)  # what disco can do in its own ~/.ssh
    os.unlink(key + ".pub")
    os.symlink(pub_secret, key + ".pub")
    with pytest.raises(Exception):  # noqa: B017 - refusing is the point, any error will do
        keys.ensure_disco_key(ctx, "node01")
    assert (fingerprint(secret), fingerprint(pub_secret)) == before


@needs_keygen
def test_dangling_key_symlink_is_not_written_through(agent_ctx, disco_is_nobody):
    ctx = agent_ctx()
    home = disco_home(ctx)
    target = ctx.path("/etc/cron.d/pwned")
    os.symlink(target, os.path.join(home, ".ssh", "id_ed25519"))
    with pytest.raises(Exception):  # noqa: B017
        keys.ensure_disco_key(ctx, "node01")
    assert not os.path.lexists(target) and not os.path.lexists(target + ".pub")


def test_planted_temp_file_symlink(agent_ctx, disco_is_nobody):
    ctx = agent_ctx()
    home = disco_home(ctx)
    target = ctx.path("/etc/sudoers.d/pwned")
    os.makedirs(os.path.dirname(target))
    ssh = os.path.join(home, ".ssh")
    for pid in (os.getpid(), os.getpid() + 1):  # the old predictable names
        for name in ("known_hosts", "authorized_keys"):
            os.symlink(target, os.path.join(ssh, f"{name}.tmp.{pid}"))
    sshfiles.write_known_hosts(ctx, ["master,10.0.0.5 " + fake_key(2)])
    sshfiles.write_authorized_keys(ctx, [fake_key(3)])
    assert not os.path.lexists(target)
    known = os.path.join(ssh, "known_hosts")
    st = os.lstat(known)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == NOBODY
    assert stat.S_IMODE(st.st_mode) == 0o644


def test_ssh_dir_replaced_by_a_symlink_to_a_root_dir(agent_ctx, disco_is_nobody):
    ctx = agent_ctx()
    home = owned_dir(ctx.disco_home())
    root_ssh = ctx.path("/root/.ssh")
    os.makedirs(root_ssh, mode=0o700)
    os.chmod(root_ssh, 0o700)
    root_file(os.path.join(root_ssh, "authorized_keys"), "ssh-ed25519 AAAAroot\n", 0o600)
    before = (os.stat(root_ssh).st_uid, stat.S_IMODE(os.stat(root_ssh).st_mode),
              sorted(os.listdir(root_ssh)),
              fingerprint(os.path.join(root_ssh, "authorized_keys")))
    os.symlink(root_ssh, os.path.join(home, ".ssh"))
    with pytest.raises(Exception):  # noqa: B017
        sshfiles.write_authorized_keys(ctx, [fake_key(3)])
    with pytest.raises(Exception):  # noqa: B017
        sshfiles.write_known_hosts(ctx, ["master " + fake_key(2)])
    after = (os.stat(root_ssh).st_uid, stat.S_IMODE(os.stat(root_ssh).st_mode),
             sorted(os.listdir(root_ssh)),
             fingerprint(os.path.join(root_ssh, "authorized_keys")))
    assert after == before


def test_erlang_cookie_symlink(agent_ctx, disco_is_nobody):
    ctx = agent_ctx()
    home = disco_home(ctx)
    secret = root_file(ctx.path("/etc/shadow"))
    before = fingerprint(secret)
    os.symlink(secret, os.path.join(home, ".erlang.cookie"))
    for pid in (os.getpid(), os.getpid() + 1):
        os.symlink(ctx.path("/etc/pwned"), os.path.join(home, f".erlang.cookie.tmp.{pid}"))
    keys.write_erlang_cookie(ctx, COOKIE)
    assert fingerprint(secret) == before and not os.path.lexists(ctx.path("/etc/pwned"))
    cookie = os.path.join(home, ".erlang.cookie")
    assert fingerprint(cookie) == (NOBODY, NOBODY, 0o400, COOKIE.encode())


def test_disco_config_in_disco_owned_dir(agent_ctx, disco_is_nobody):
    ctx = agent_ctx()
    the_spec = spec.make_spec("demo", "master", master_address="10.0.0.5")
    disco_root = owned_dir(ctx.path(disco_config.DISCO_ROOT))
    secret = root_file(ctx.path("/etc/shadow"))
    before = fingerprint(secret)
    config = ctx.path(disco_config.config_path(the_spec))
    os.symlink(secret, config)
    for pid in (os.getpid(), os.getpid() + 1):
        os.symlink(ctx.path("/etc/pwned"),
                   os.path.join(disco_root, f"disco_8989.config.tmp.{pid}"))
    disco_config.write_config(ctx, the_spec, [["node01", "2"]])
    assert fingerprint(secret) == before and not os.path.lexists(ctx.path("/etc/pwned"))
    st = os.lstat(config)
    assert stat.S_ISREG(st.st_mode)
    assert json.loads(open(config).read())["hosts"] == [["node01", "2"]]
    # where disco could replace the directory itself by a link, that link is refused
    owned_dir(os.path.dirname(disco_root))
    os.rename(disco_root, disco_root + ".old")
    os.symlink(ctx.path("/etc"), disco_root)
    with pytest.raises(Exception):  # noqa: B017
        disco_config.write_config(ctx, the_spec, [["node02", "2"]])
    assert fingerprint(secret) == before
    assert not os.path.exists(ctx.path("/etc/disco_8989.config"))


def test_reading_through_a_symlink_leaks_nothing(agent_ctx, disco_is_nobody):
    """known_hosts -> /etc/shadow: the merge must not copy root's file into disco's."""
    ctx = agent_ctx()
    home = disco_home(ctx)
    secret = root_file(ctx.path("/etc/shadow"), "root:$6$secret-hash:1:0:99999:7:::\n")
    os.symlink(secret, os.path.join(home, ".ssh", "known_hosts"))
    sshfiles.write_known_hosts(ctx, ["master " + fake_key(2)])
    with open(os.path.join(home, ".ssh", "known_hosts")) as handle:
        assert "secret-hash" not in handle.read()


# Every read by the root agent is capped, the size taken from fstat before reading: a job
# running as disco that plants an 8 GiB sparse file where the agent reads (known_hosts,
# authorized_keys, Disco's config) cannot make it die of MemoryError (issue 21 N3).

_UNDER_1_GIB = r"""
import os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from imagebake.agent import fsutil
path = sys.argv[1]
try:
    data = fsutil.read_bytes(path)
except MemoryError:
    print("MemoryError")
except OSError as exc:
    print("refused:", exc)
else:
    print("read", len(data))
"""


def test_an_8_gib_sparse_file_is_refused_not_read_under_a_1_gib_limit(tmp_path):
    path = tmp_path / "known_hosts"
    with open(path, "wb") as handle:
        handle.truncate(8 << 30)  # sparse: no disk used
    proc = subprocess.run([sys.executable, "-c", _UNDER_1_GIB, str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("refused:"), proc.stdout + proc.stderr
    assert "8589934592 bytes" in proc.stdout and str(path) in proc.stdout


def test_an_oversized_file_is_refused_with_a_log_line(tmp_path):
    path = tmp_path / "settings.py"
    path.write_bytes(b"#" * (fsutil.MAX_READ + 1))
    with agent_log() as lines, pytest.raises(fsutil.FileTooLarge):
        fsutil.read_text(str(path))
    assert [line for line in lines if f"over the {fsutil.MAX_READ} byte cap" in line]
    path.write_bytes(b"#" * fsutil.MAX_READ)
    assert len(fsutil.read_bytes(str(path))) == fsutil.MAX_READ


def test_an_oversized_file_in_the_way_of_a_write_is_replaced_unread(tmp_path):
    path = tmp_path / "disco_8989.config"
    with open(path, "wb") as handle:
        handle.truncate(8 << 30)
    with agent_log() as lines:
        assert fsutil.write_atomic(str(path), "[]\n")
    assert path.read_bytes() == b"[]\n"
    assert [line for line in lines if "not read" in line]
