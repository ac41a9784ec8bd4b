"""imagebake.bake.packer's machine-readable parser, on output recorded from real runs
of Packer 1.6.6 (tests/fixtures/packer/*.txt)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagebake.bake import packer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "packer"


def events(name):
    with open(FIXTURES / name, encoding="utf-8") as fh:
        return packer.parse(fh)


def test_unescape_comma_and_newline():
    assert packer.unescape("a%!(PACKER_COMMA) b\\nc") == "a, b\nc"


def test_parse_ui_say_names_the_build():
    e = packer.parse_line(
        "1795626066,,ui,say,==> docker.node: Provisioning with shell script: x/20-packages.sh")
    assert isinstance(e, packer.Ui)
    assert (e.level, e.build) == ("say", "docker.node")
    assert e.text_only == "Provisioning with shell script: x/20-packages.sh"


def test_parse_ui_message_with_escaped_comma():
    e = packer.parse_line("1,,ui,message,    docker.node: [imagebake network] dnsmasq: "
                          "installed%!(PACKER_COMMA) disabled")
    assert e.build == "docker.node"
    assert e.text_only == "[imagebake network] dnsmasq: installed, disabled"


def test_parse_post_processor_prefix():
    e = packer.parse_line(
        "1,,ui,message,    docker.node (docker-tag): Repository: imagebake/node:x")
    assert e.build == "docker.node"
    assert e.text_only == "Repository: imagebake/node:x"


def test_parse_artifact_and_error_lines():
    art = packer.parse_line("5,docker.master,artifact,1,id,imagebake/master:latest")
    assert art == packer.Artifact(5, "docker.master", 1, "id", "imagebake/master:latest")
    err = packer.parse_line("5,docker.master,error,Script exited%!(PACKER_COMMA) status 1")
    assert err == packer.BuildError(5, "docker.master", "Script exited, status 1")
    assert packer.parse_line("5,,error-count,1") == packer.ErrorCount(5, 1)
    assert packer.parse_line("5,docker.node,artifact-count,3") == packer.ArtifactCount(
        5, "docker.node", 3)


def test_non_machine_readable_line_is_raw():
    e = packer.parse_line("panic: something broke")
    assert isinstance(e, packer.Other) and e.type == "raw"
    assert packer.parse_line("\n") is None


def test_version_fixture():
    evs = events("version.txt")
    assert packer.Other(evs[0].timestamp, "", "version", ("1.6.6",)) == evs[0]


def test_successful_build_fixture():
    evs = events("build-docker-ok.txt")
    starts = [e.build for e in evs if isinstance(e, packer.BuildStart)]
    ends = [(e.build, e.ok) for e in evs if isinstance(e, packer.BuildEnd)]
    assert sorted(starts) == ["docker.master", "docker.node"]
    assert sorted(ends) == [("docker.master", True), ("docker.node", True)]
    result = packer.summarize(evs, Path("log"))
    assert result.ok and not result.failed and result.first_error == ""
    assert sorted(result.finished) == ["docker.master", "docker.node"]
    master = result.artifacts["docker.master"]
    assert master[0]["id"].startswith("sha256:")
    assert master[1]["builder-id"] == "packer.post-processor.docker-tag"
    assert set(result.containers) == {"docker.master", "docker.node"}


def test_build_end_order_each_build_starts_before_it_ends():
    evs = events("build-docker-ok.txt")
    started, ended = set(), []
    for e in evs:
        if isinstance(e, packer.BuildStart):
            started.add(e.build)
        if isinstance(e, packer.BuildEnd):
            assert e.build in started
            ended.append(e.build)
    assert sorted(ended) == ["docker.master", "docker.node"]  # both ends were parsed


def test_failed_provisioning_fixture_gives_one_line():
    evs = events("build-docker-provision-error.txt")
    result = packer.summarize(evs, Path("log"), returncode=1)
    assert not result.ok
    assert list(result.failed) == ["docker.master"]
    assert result.finished == ["docker.node"]
    assert "\n" not in result.first_error
    assert result.first_error.startswith("docker.master: Script exited with non-zero exit status")
    assert "sed: -e expression #1, char 32" in result.first_error


def test_template_error_fixture_gives_one_line():
    result = packer.summarize(events("build-invalid-variable.txt"), Path("log"), returncode=1)
    assert not result.ok
    assert "\n" not in result.first_error
    assert "disco_source must be none" in result.first_error
    assert "source code not available" not in result.first_error


@pytest.mark.parametrize("text,expected", [
    ("Packer v1.6.6", (1, 6, 6)),
    ("Packer v1.10.3\n\nYour version of Packer is out of date!", (1, 10, 3)),
])
def test_version_regex(monkeypatch, text, expected):
    class Proc:
        returncode = 0
        stdout = text
        stderr = ""

    monkeypatch.setattr(packer, "_run", lambda *a, **k: Proc())
    assert packer.version() == expected
    assert packer.needs_init(packer.version()) == (expected >= (1, 7, 0))


def test_missing_packer_binary_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(packer.ImagebakeError) as exc:
        packer.packer_bin()
    assert "packer not found" in str(exc.value) and "\n" not in str(exc.value)


def test_var_args_render_maps_and_bools():
    args = packer._var_args({"content_hash": {"node": "b", "master": "a"}, "encrypt_boot": True})
    assert args == ["-var", 'content_hash={master = "a", node = "b"}',
                    "-var", "encrypt_boot=true"]
