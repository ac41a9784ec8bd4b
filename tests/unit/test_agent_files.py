"""known_hosts/authorized_keys merging, resolver layouts, Disco config rendering."""

import json
import os

import pytest

from imagebake.agent import disco_config as D
from imagebake.agent import dns, sshfiles
from imagebake.agent.spec import make_spec

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAA"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBB"


# -- ssh files -------------------------------------------------------------------

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


def _has_disco():
    import pwd
    try:
        pwd.getpwnam("disco")
        return True
    except KeyError:
        return False


def test_known_hosts_line_drops_comment():
    line = sshfiles.known_hosts_line(["node01", "10.0.0.11"], KEY_A + " root@node01")
    assert line == "node01,10.0.0.11 " + KEY_A


# -- resolver ----------------------------------------------------------------------

def test_plain_resolv_conf_rewritten_in_place(agent_ctx):
    ctx = agent_ctx()
    path = ctx.path("/etc/resolv.conf")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as handle:
        handle.write("# docker\nnameserver 127.0.0.11\nsearch corp.internal\noptions ndots:0\n")
    inode = os.stat(path).st_ino
    changed, how = dns.point_resolver(ctx, "10.0.0.5")
    assert changed and how == "resolv.conf in place"
    assert os.stat(path).st_ino == inode  # bind mount safe: same file
    assert open(path).read().splitlines()[1:] == [
        "nameserver 10.0.0.5", "search corp.internal", "options ndots:0"]
    assert dns.point_resolver(ctx, "10.0.0.5")[0] is False


def test_resolvconf_layout_writes_head_and_runs_resolvconf(agent_ctx):
    ctx = agent_ctx()
    os.makedirs(ctx.path("/etc/resolvconf/resolv.conf.d"))
    changed, how = dns.point_resolver(ctx, "10.0.0.5")
    assert changed and how == "resolvconf head"
    head = open(ctx.path("/etc/resolvconf/resolv.conf.d/head")).read()
    assert "nameserver 10.0.0.5" in head
    assert ["resolvconf", "-u"] in ctx.runner.calls
    assert not os.path.exists(ctx.path("/etc/resolv.conf"))
    ctx.runner.calls[:] = []
    assert dns.point_resolver(ctx, "10.0.0.5")[0] is False
    assert ctx.runner.calls == []  # unchanged: no resolvconf -u


def test_master_saves_upstream_before_pointing_at_itself(agent_ctx):
    ctx = agent_ctx()
    os.makedirs(ctx.path("/etc"))
    with open(ctx.path("/etc/resolv.conf"), "w") as handle:
        handle.write("nameserver 10.0.0.2\nnameserver 127.0.0.1\nnameserver 127.0.0.11\n")
    assert dns.save_upstream(ctx)
    dns.point_resolver(ctx, "127.0.0.1")
    assert not dns.save_upstream(ctx)  # kept from the first run
    # dnsmasq's own address would loop; Docker's embedded resolver is a real upstream
    assert open(ctx.path(dns.UPSTREAM_FILE)).read() == (
        "nameserver 10.0.0.2\nnameserver 127.0.0.11\n")


def test_hosts_file_render():
    text = dns.render_hosts([("master", "10.0.0.5"), ("node01", "10.0.0.11")])
    assert text.splitlines()[1:] == ["10.0.0.5 master", "10.0.0.11 node01"]


# -- Disco config --------------------------------------------------------------------

def nodes(*names, **kw):
    return [{"hostname": n, "cores": kw.get("cores", 4)} for n in names]


def test_rows_use_strings_and_leave_out_a_master_without_workers():
    spec = make_spec("c", "master", expected_nodes=2)
    rows = D.host_rows(spec, "master", 8, nodes("node02", "node01"))
    assert rows == [["node01", "4"], ["node02", "4"]]
    text = D.render_config(rows)
    assert json.loads(text) == {"hosts": rows, "blacklist": [], "gc_blacklist": []}


def test_master_listed_only_with_master_workers_and_fixed_workers_win():
    spec = make_spec("c", "master", master_workers=2, workers=6)
    rows = D.host_rows(spec, "master", 8, nodes("node01", cores=16))
    assert rows == [["master", "2"], ["node01", "6"]]


@pytest.mark.parametrize("expected,joined,master_workers,replicas", [
    (0, 0, 0, 1), (1, 0, 0, 1), (2, 0, 0, 2), (3, 0, 0, 3), (10, 0, 0, 3),
    (0, 2, 0, 2), (1, 0, 1, 2), (2, 0, 3, 3)])
def test_replicas_follow_the_node_count(expected, joined, master_workers, replicas):
    spec = make_spec("c", "master", expected_nodes=expected, master_workers=master_workers)
    text = D.render_settings(spec, "master", joined)
    for key in ("DDFS_TAG_MIN_REPLICAS", "DDFS_TAG_REPLICAS", "DDFS_BLOB_REPLICAS"):
        assert f"{key} = {replicas}" in text


def test_settings_keep_installed_lines_and_narrow_erlang_ports():
    spec = make_spec("c", "master", erlang_ports=(31000, 31010), disco_port=9000)
    installed = ('DISCO_HOME = "/opt/disco"\nDISCO_PORT = 8989\nDDFS_TAG_REPLICAS     = 3\n'
                 '# a comment\n')
    text = D.render_settings(spec, "master", 0, installed)
    assert 'DISCO_HOME = "/opt/disco"' in text and "# a comment" in text
    assert "DISCO_PORT = 8989" not in text and "DISCO_PORT = 9000" in text
    assert "DDFS_TAG_REPLICAS     = 3" not in text
    assert ('DISCO_ERLANG = "erl -kernel inet_dist_listen_min 31000 inet_dist_listen_max 31010"'
            in text)
    assert D.render_settings(spec, "master", 0, text) == text
    namespace = {}
    exec(compile(text, "settings.py", "exec"), namespace)  # valid Python assignments
    assert namespace["DISCO_MASTER_HOST"] == "master" and namespace["DISCO_USER"] == "disco"


def test_ddfs_put_port_avoids_the_join_port():
    assert D.ddfs_put_port(make_spec("c", "master")) == 8991  # join_port 8990 taken
    assert D.ddfs_put_port(make_spec("c", "master", join_port=8995)) == 8990


def test_config_path_uses_the_disco_port():
    assert D.config_path(make_spec("c", "master", disco_port=9000)) == \
        "/usr/var/disco/disco_9000.config"


def test_disco_absent_and_present(agent_ctx):
    ctx = agent_ctx()
    assert D.disco_installed(ctx) is None
    os.makedirs(ctx.path("/usr/local/bin"))
    exe = ctx.path("/usr/local/bin/disco")
    with open(exe, "w") as handle:
        handle.write("#!/bin/sh\n")
    os.chmod(exe, 0o755)
    assert D.disco_installed(ctx) == "/usr/local/bin/disco"
