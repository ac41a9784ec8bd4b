"""imagebake/targets/aws/images.py: Packer's temporary security group for amazon-ebs lets
SSH in from the builder's own address only, never from 0.0.0.0/0 (Packer's default when
neither temporary_security_group_source_cidrs nor _source_public_ip is set; Packer 1.6.6
has only the first). The bake fills the variable from checkip (network.caller_cidr, the
same lookup as the cluster's SSH ingress), or takes --var ssh_source_cidr, and stops in
one line without it. Against moto's server and the fake checkip (conftest: 1.2.3.4)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imagebake import targets
from imagebake.bake import build, packer
from imagebake.errors import ImagebakeError

from .conftest import CALLER_ADDRESS

ROOT = Path(__file__).resolve().parents[2]
AWS = targets.get("aws")
needs_packer = pytest.mark.skipif(shutil.which("packer") is None, reason="packer not installed")


@pytest.fixture
def packer_runs(monkeypatch, aws_env):
    """packer build replaced: records the variables the bake hands it (nothing is built)."""
    runs: list[dict] = []

    def fake_build(template_dir, only, variables, **kw):
        runs.append(dict(variables))
        return packer.BuildResult(ok=True, log_path=Path("packer.log"), seconds=0.0)

    monkeypatch.setattr(build.packer, "build", fake_build)
    monkeypatch.setattr(build.packer, "init", lambda template_dir: False)
    monkeypatch.setattr(build.packer, "packer_bin", lambda: "/bin/true")
    return runs


def test_packer_lets_ssh_in_from_the_callers_address_only(packer_runs):
    AWS.bake(variables={"disco_source": "none"})
    assert packer_runs[-1]["ssh_source_cidr"] == f"{CALLER_ADDRESS}/32"


@needs_packer
def test_the_variables_the_bake_passes_validate_on_this_packer(packer_runs):
    AWS.bake(variables={"disco_source": "none"})
    assert packer_runs[-1]["ssh_source_cidr"] == f"{CALLER_ADDRESS}/32"
    packer.validate(ROOT / "packer", packer_runs[-1],
                    only=["amazon-ebs.master", "amazon-ebs.node"])


def test_without_the_callers_address_the_bake_stops_in_one_line(packer_runs, monkeypatch):
    monkeypatch.setenv("IMAGEBAKE_CHECKIP_URL", "http://127.0.0.1:9/")  # nothing listens
    with pytest.raises(ImagebakeError) as exc:
        AWS.bake(variables={"disco_source": "none"})
    message = str(exc.value)
    assert "\n" not in message and "--var ssh_source_cidr=203.0.113.7/32" in message
    assert packer_runs == []  # stopped before Packer


def test_an_explicit_ssh_source_cidr_is_used_without_asking(packer_runs, monkeypatch):
    monkeypatch.setenv("IMAGEBAKE_CHECKIP_URL", "http://127.0.0.1:9/")  # not asked
    AWS.bake(variables={"disco_source": "none", "ssh_source_cidr": "198.51.100.0/24"})
    assert packer_runs[-1]["ssh_source_cidr"] == "198.51.100.0/24"
    AWS.bake(variables={"disco_source": "none", "ssh_source_cidr": "198.51.100.7"}, force=True)
    assert packer_runs[-1]["ssh_source_cidr"] == "198.51.100.7/32"


@pytest.mark.parametrize("value,needle", [
    ("0.0.0.0/0", "wider than /8"),
    ("0.0.0.0/1", "wider than /8"),
    ("10.0.0.1/8", "host bits"),
    ("2001:db8::1/128", "IPv4"),
    ("somewhere", "not a CIDR"),
])
def test_a_world_open_or_bad_ssh_source_cidr_is_refused(packer_runs, value, needle):
    with pytest.raises(ImagebakeError, match=needle) as exc:
        AWS.bake(variables={"disco_source": "none", "ssh_source_cidr": value})
    assert "\n" not in str(exc.value) and packer_runs == []


def test_the_callers_address_is_not_a_bake_input(monkeypatch, aws_env):
    # baking from another network must not rebake: the address is not in the content hash
    hashes: list[dict] = []
    real = build._hashes
    monkeypatch.setattr(build, "_hashes", lambda *a: hashes.append(real(*a)) or hashes[-1])
    monkeypatch.setattr(build, "_packer_build", lambda *a: {})
    monkeypatch.setattr(build.packer, "packer_bin", lambda: "/bin/true")
    AWS.bake(variables={"disco_source": "none", "ssh_source_cidr": "198.51.100.7/32"})
    AWS.bake(variables={"disco_source": "none"})
    assert len(hashes) == 2 and hashes[0] == hashes[1]


@needs_packer
@pytest.mark.parametrize("role", ["master", "node"])
def test_each_amazon_ebs_source_takes_its_ssh_source_from_the_variable(role):
    # Packer checks temporary_security_group_source_cidrs itself: a value that is not a
    # CIDR fails validation of that source, so the variable reaches both sources ...
    given = {"content_hash": {"master": "a" * 64, "node": "b" * 64},
             "source_ami": "ami-0123456789abcdef0"}
    packer.validate(ROOT / "packer", {**given, "ssh_source_cidr": "192.0.2.1/32"},
                    only=[f"amazon-ebs.{role}"])
    with pytest.raises(ImagebakeError, match="temporary_security_group_source_cidrs"):
        packer.validate(ROOT / "packer", {**given, "ssh_source_cidr": "192.0.2.1"},
                        only=[f"amazon-ebs.{role}"])
    # ... and without it an amazon-ebs build refuses instead of opening 0.0.0.0/0
    with pytest.raises(ImagebakeError):
        packer.validate(ROOT / "packer", given, only=[f"amazon-ebs.{role}"])
