"""What a baked master or node image must be; see conftest.py for how to run."""

from __future__ import annotations

import re

import pytest

AGENT_PKG = "/opt/imagebake/imagebake_agent"
AGENT_BIN = "/usr/local/sbin/imagebake-agent"


def _sshd_option(host, key):
    """The effective value of KEY: the first active line wins (drop-ins included first)."""
    files = ["/etc/ssh/sshd_config.d/00-imagebake.conf", "/etc/ssh/sshd_config"]
    for path in files:
        f = host.file(path)
        if not f.exists:
            continue
        for line in f.content_string.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[0].lower() == key.lower():
                return parts[1].strip()
    return None


# ------------------------------------------------------------------ packages and runtimes
@pytest.mark.parametrize("package", ["erlang-nox", "openssh-server", "dnsmasq", "python3"])
def test_package_installed(host, package):
    assert host.package(package).is_installed


def test_erlang_runs(host):
    assert host.run("erl -noshell -eval 'halt().'").rc == 0


def test_python_on_path_for_disco(host):
    assert host.run("python --version").rc == 0


def test_disco_user_exists(host):
    user = host.user("disco")
    assert user.exists
    assert user.home == "/home/disco"
    assert user.shell == "/bin/bash"
    assert host.file("/home/disco").user == "disco"


def test_image_knows_its_role(host, role):
    assert host.file("/etc/imagebake/role").content_string.strip() == role


def test_disco_source_recorded(host):
    assert "DISCO_SOURCE=" in host.file("/etc/imagebake/disco-source").content_string


# ------------------------------------------------------------------ resolver
def test_master_dnsmasq_serves_cluster_names(host, role):
    if role != "master":
        pytest.skip("master only")
    conf = host.file("/etc/dnsmasq.conf").content_string
    assert "addn-hosts=/etc/imagebake/hosts" in conf
    assert "resolv-file=/etc/imagebake/resolv.upstream" in conf
    assert host.file("/etc/imagebake/hosts").exists
    assert host.run("dnsmasq --test --conf-file=/etc/dnsmasq.conf").rc == 0


def _dnsmasq_boot_links(host):
    links = host.run("ls /etc/rc2.d/ /etc/systemd/system/multi-user.target.wants/ 2>/dev/null")
    return re.findall(r"^(S\d\ddnsmasq|dnsmasq\.service)$", links.stdout, re.M)


def test_dnsmasq_enabled_at_boot_on_master_only(host, role):
    assert host.package("dnsmasq").is_installed
    default = host.file("/etc/default/dnsmasq").content_string
    if role == "master":
        assert _dnsmasq_boot_links(host)
        assert re.search(r"^ENABLED=1$", default, re.M)
    else:
        assert not _dnsmasq_boot_links(host)
        assert re.search(r"^ENABLED=0$", default, re.M)


def test_resolver_not_baked_in(host):
    head = host.file("/etc/resolvconf/resolv.conf.d/head")
    if head.exists:
        assert "nameserver" not in head.content_string
    for path in ("/etc/resolvconf/resolv.conf.d/base", "/etc/resolvconf/resolv.conf.d/tail"):
        f = host.file(path)
        if f.exists:
            assert "nameserver" not in f.content_string


def test_cloud_init_leaves_resolver_and_hosts_to_agent(host):
    cfg = host.file("/etc/cloud/cloud.cfg.d/99-imagebake.cfg").content_string
    assert "manage_resolv_conf: false" in cfg
    assert "manage_etc_hosts: localhost" in cfg


# ------------------------------------------------------------------ the agent
def test_agent_installed(host):
    assert host.file(f"{AGENT_PKG}/__main__.py").is_file
    wrapper = host.file(AGENT_BIN)
    assert wrapper.mode & 0o111
    assert "PYTHONPATH=/opt/imagebake exec python3 -m imagebake_agent" in wrapper.content_string


def test_agent_compiles_under_image_python(host):
    assert host.run(f"python3 -m compileall -q {AGENT_PKG}").rc == 0


def test_agent_help_runs(host):
    result = host.run(f"{AGENT_BIN} --help")
    assert result.rc == 0, result.stderr
    assert "run" in result.stdout


def test_agent_starts_at_boot(host, backend, request):
    if backend == "docker":
        config = request.getfixturevalue("image_config")
        assert config["Entrypoint"] == [AGENT_BIN, "run"]
        assert not config.get("Cmd")
    else:
        unit = host.file("/etc/systemd/system/multi-user.target.wants/imagebake-agent.service")
        job = host.file("/etc/init/imagebake-agent.conf")
        assert unit.exists or job.exists


def test_docker_labels(host, backend, role, request):
    if backend != "docker":
        pytest.skip("docker images only")
    labels = request.getfixturevalue("image_config")["Labels"]
    assert labels["imagebake.role"] == role
    assert re.fullmatch(r"[0-9a-f]{64}", labels["imagebake.content-hash"])
    assert labels["imagebake.disco-source"]


# ------------------------------------------------------------------ quiet after boot
def test_periodic_apt_off(host):
    dump = host.run("apt-config dump").stdout
    assert 'APT::Periodic::Enable "0";' in dump
    assert 'APT::Periodic::Update-Package-Lists "0";' in dump
    assert 'APT::Periodic::Unattended-Upgrade "0";' in dump
    for job in ("/etc/cron.daily/apt", "/etc/cron.daily/apt-compat"):
        f = host.file(job)
        if f.exists:
            assert not f.mode & 0o111, f"{job} is executable"


def test_motd_news_off(host):
    news = host.file("/etc/default/motd-news")
    if news.exists:
        assert re.search(r"^ENABLED=0$", news.content_string, re.M)
    for script in ("50-motd-news", "90-updates-available", "91-release-upgrade"):
        f = host.file(f"/etc/update-motd.d/{script}")
        if f.exists:
            assert not f.mode & 0o111, f"{script} is executable"


def test_cloud_init_apt_rewrite_off(host):
    cfg = host.file("/etc/cloud/cloud.cfg.d/99-imagebake.cfg").content_string
    assert "apt_preserve_sources_list: true" in cfg
    assert "package_update: false" in cfg


# ------------------------------------------------------------------ sshd
def test_sshd_no_password_logins(host):
    assert _sshd_option(host, "PasswordAuthentication") == "no"


def test_sshd_no_root_logins(host):
    assert _sshd_option(host, "PermitRootLogin") == "no"


def test_sshd_only_ed25519_host_key(host):
    lines = host.file("/etc/ssh/sshd_config").content_string.splitlines()
    keys = [ln.split()[1] for ln in lines if ln.split()[:1] == ["HostKey"]]
    assert keys == ["/etc/ssh/ssh_host_ed25519_key"]


# ------------------------------------------------------------------ no secrets
def _named(image_files, pattern):
    names, _ = image_files
    return [p for p in names if re.search(pattern, p)]


def test_no_ssh_host_keys(image_files):
    assert _named(image_files, r"/ssh_host_[a-z0-9]+_key(\.pub)?$") == []


def test_no_private_keys(image_files):
    _, keys = image_files
    assert keys == []


def test_no_authorized_keys(image_files):
    assert _named(image_files, r"/authorized_keys2?$") == []


def test_no_erlang_cookie(image_files):
    assert _named(image_files, r"/\.erlang\.cookie$") == []


def test_no_shell_history(image_files):
    assert _named(image_files, r"_history$|/\.lesshst$|/\.viminfo$") == []
