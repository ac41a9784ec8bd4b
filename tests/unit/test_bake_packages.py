"""provision/lib.sh base_packages and the offline base image's package list agree, and both
carry iptables (the agent fences the metadata service with it at every start)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def base_packages(os_id: str, version: str) -> list[str]:
    script = (f". {ROOT}/provision/lib.sh; OS_ID={os_id}; OS_VERSION_ID={version}; "
              "base_packages")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.parametrize("os_id,version", [("debian", "12"), ("ubuntu", "14.04")])
def test_iptables_is_a_base_package(os_id, version):
    assert "iptables" in base_packages(os_id, version)


def test_docker_base_image_carries_every_debian_base_package():
    text = (ROOT / "provision" / "base" / "docker-base.sh").read_text()
    listed = set()
    for value in re.findall(r'^PACKAGES="([^"]*)"', text, re.M):
        listed.update(v for v in value.replace("$PACKAGES", "").split(",") if v)
    assert set(base_packages("debian", "12")) <= listed
