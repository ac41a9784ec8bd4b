"""The templates themselves: `packer validate` and `packer fmt -check` (needs packer)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from imagebake.bake import packer, variables
from imagebake.errors import ImagebakeError

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "packer"
HASHES = {"master": "a" * 64, "node": "b" * 64}

needs_packer = pytest.mark.skipif(shutil.which("packer") is None, reason="packer not installed")


@needs_packer
def test_templates_are_formatted():
    # not recursive on Packer 1.6.6: the init/ directory is checked on its own
    assert packer.fmt_check(TEMPLATES) == []
    assert packer.fmt_check(TEMPLATES / "init") == []


@needs_packer
def test_syntax_only_validate():
    packer.validate(TEMPLATES, syntax_only=True)


@needs_packer
def test_docker_sources_validate():
    packer.validate(TEMPLATES, {"content_hash": HASHES, "disco_source": "none"},
                    only=["docker.master", "docker.node"])


@needs_packer
def test_full_validate_without_aws_credentials(monkeypatch, tmp_path):
    # Packer 1.6.6 validates amazon-ebs without calling AWS once source_ami is set.
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    packer.validate(TEMPLATES, {"content_hash": HASHES, "source_ami": "ami-0123456789abcdef0",
                                "ssh_source_cidr": "192.0.2.1/32"})  # the bake passes it


@needs_packer
@pytest.mark.parametrize("var,value", [
    ("disco_source", "/tmp/disco.zip"),
    ("source_ami", "i-123"),
    ("aws_region", "mars"),
    ("disco_ref", "--upload-pack=x y"),
])
def test_bad_variable_values_fail_validation(var, value):
    with pytest.raises(ImagebakeError) as exc:
        packer.validate(TEMPLATES, {var: value}, only=["docker.master"])
    assert "\n" not in str(exc.value)


def test_wrapper_defaults_match_template_defaults():
    text = (TEMPLATES / "variables.pkr.hcl").read_text()
    for key, value in variables.DEFAULTS.items():
        block = re.search(rf'variable "{key}" {{(.*?)\n}}', text, re.S).group(1)
        default = re.search(r'^\s*default\s*=\s*"([^"]*)"', block, re.M)
        assert default and default.group(1) == value, key  # the value, not its spacing


def test_plugins_block_is_outside_the_template_dir():
    # Packer 1.6 cannot read required_plugins: it lives where only `packer init` looks.
    for path in TEMPLATES.glob("*.pkr.hcl"):
        assert "required_plugins" not in path.read_text(), path
    assert "required_plugins" in (TEMPLATES / "init" / "plugins.pkr.hcl").read_text()
