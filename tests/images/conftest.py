"""testinfra checks of a baked image, on any backend:

    pytest tests/images --hosts docker://CONTAINER --role master
    pytest tests/images --hosts ssh://ubuntu@ADDRESS --sudo --role node

(`invoke verify` starts the containers and passes these.) Without --hosts the
checks are skipped: they would otherwise inspect the machine running pytest.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import time

import pytest

PEM_PRIVATE = re.compile(
    rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n(?:(?:Proc-Type|DEK-Info):[^\n]*\n)*\r?\n?"
    rb"[A-Za-z0-9+/=]{40,}")
SECRET_NAMES = re.compile(
    r"(^|/)(ssh_host_[a-z0-9]+_key(\.pub)?|authorized_keys2?|\.erlang\.cookie|"
    r"\.(bash|zsh|sh|python|mysql|psql)_history|\.lesshst|\.viminfo)$")


def pytest_addoption(parser):
    parser.addoption("--role", choices=("master", "node"), default=None,
                     help="image role (default: read /etc/imagebake/role on the host)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("hosts", default=None):
        return
    skip = pytest.mark.skip(reason="image checks need --hosts (run `invoke verify`)")
    for item in items:
        if "tests/images" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def role(request, host):
    chosen = request.config.getoption("role", default=None)
    return chosen or host.file("/etc/imagebake/role").content_string.strip()


@pytest.fixture(scope="module")
def backend(host):
    return host.backend.NAME  # "docker", "ssh", "paramiko", ...


@pytest.fixture(scope="module")
def image_config(host, backend):
    """The docker image's config (Entrypoint, Labels) behind the verify container."""
    if backend != "docker":
        pytest.skip("image config exists for docker images only")
    name = host.backend.name
    image = subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}", name],
                           capture_output=True, text=True, check=True).stdout.strip()
    out = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)[0]["Config"]


def _scan_docker_export(name):
    names, keys = [], []
    proc = subprocess.Popen(["docker", "export", name], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                path = "/" + member.name.lstrip("./")
                if SECRET_NAMES.search(path):
                    names.append(path)
                if member.isfile() and member.size < 1 << 20:
                    data = tar.extractfile(member).read()
                    if b"PRIVATE KEY-----" in data and PEM_PRIVATE.search(data):
                        keys.append(path)
    finally:
        proc.stdout.close()
        proc.wait()
    return names, keys


def _scan_find(host):
    """ssh backend: files baked into the image (older than this boot) only:
    the agent makes host keys and cloud-init writes authorized_keys at first boot."""
    btime = int(host.run("awk '/^btime/ {print $2}' /proc/stat").stdout.strip() or time.time())
    prune = r"\( -path /proc -o -path /sys -o -path /dev -o -path /run \) -prune -o"
    listing = host.run(f"find / -xdev {prune} ! -newermt @{btime} -print").stdout.splitlines()
    names = [p for p in listing if SECRET_NAMES.search(p)]
    cands = host.run(
        f"find / -xdev {prune} -type f -size -1024k ! -newermt @{btime} -print0 "
        "| xargs -0 -r grep -lsaE -e '-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----'").stdout.split()
    keys = [p for p in cands if PEM_PRIVATE.search(host.file(p).content)]
    return names, keys


@pytest.fixture(scope="module")
def image_files(host, backend):
    """(paths whose names are secrets, paths holding a PEM private key)."""
    if backend == "docker":
        return _scan_docker_export(host.backend.name)
    return _scan_find(host)
