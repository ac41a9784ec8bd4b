"""Config file defaults (imagebake/settings.py) through invoke's own configuration system:
project invoke.yaml, ~/.invoke.yaml, INVOKE_IMAGEBAKE_* and -f, flags winning; unknown keys
and wrong types are one line naming the key and the file, exit 2. No Docker needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Config

from imagebake import settings
from imagebake.errors import ImagebakeError

ROOT = Path(__file__).resolve().parents[2]
INVOKE = Path(sys.executable).with_name("invoke")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A temp HOME (for ~/.invoke.yaml) and a temp project directory (for invoke.yaml)."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    (tmp_path / "project").mkdir()
    return path


def config(tmp_path, runtime=None) -> Config:
    """What invoke's CLI builds: system and user files, the project's, a runtime (-f) file."""
    cfg = Config(system_prefix=str(tmp_path / "etc") + "/",
                 project_location=str(tmp_path / "project"), runtime_path=runtime)
    cfg.load_project()
    cfg.load_runtime()
    return cfg


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def resolve(tmp_path, command="launch", flags=None, environ=None, runtime=None):
    return settings.resolve(config(tmp_path, runtime), command, flags, environ or {})


# ------------------------------------------------------------------ precedence
def test_without_files_every_value_is_the_builtin_default(tmp_path, home):
    values = resolve(tmp_path)
    assert values["target"].value == "aws" and values["target"].source == "default"
    assert values["name"].value == "imagebake"
    assert values["wait"].value is True and values["spot"].value is False
    assert resolve(tmp_path, "bake")["target"].value == "docker"


def test_user_file_sets_defaults(tmp_path, home):
    path = write(home / ".invoke.yaml",
                 "imagebake:\n  region: eu-west-1\n  spot: true\n  slaves: 3\n  ttl: 4h\n")
    values = resolve(tmp_path)
    assert values["region"].value == "eu-west-1"
    assert values["region"].source == f"user file {path}"
    assert values["spot"].value is True and values["slaves"].value == 3
    assert values["ttl"].value == "4h"


def test_project_file_beats_user_file(tmp_path, home):
    write(home / ".invoke.yaml", "imagebake:\n  region: eu-west-1\n  key_name: mine\n")
    project = write(tmp_path / "project" / "invoke.yaml", "imagebake:\n  region: us-east-1\n")
    values = resolve(tmp_path)
    assert values["region"].value == "us-east-1"
    assert values["region"].source == f"project file {project}"
    assert values["key_name"].source.startswith("user file")


def test_environment_beats_files_and_runtime_file_beats_environment(tmp_path, home):
    write(tmp_path / "project" / "invoke.yaml", "imagebake:\n  region: us-east-1\n")
    env = {"INVOKE_IMAGEBAKE_REGION": "ap-south-1", "INVOKE_IMAGEBAKE_SPOT": "yes",
           "INVOKE_IMAGEBAKE_SLAVES": "5"}
    values = resolve(tmp_path, environ=env)
    assert values["region"].value == "ap-south-1"
    assert values["region"].source == "env INVOKE_IMAGEBAKE_REGION"
    assert values["spot"].value is True and values["slaves"].value == 5
    runtime = write(tmp_path / "run.yaml", "imagebake:\n  region: sa-east-1\n")
    values = resolve(tmp_path, environ=env, runtime=str(runtime))
    assert values["region"].value == "sa-east-1"
    assert values["region"].source == f"runtime file {runtime}"


def test_flags_win_over_everything(tmp_path, home):
    write(home / ".invoke.yaml", "imagebake:\n  region: eu-west-1\n  target: docker\n")
    values = resolve(tmp_path, flags={"region": "us-west-2", "target": "aws", "slaves": None},
                     environ={"INVOKE_IMAGEBAKE_REGION": "ap-south-1"})
    assert values["region"].value == "us-west-2" and values["region"].source == "flag --region"
    assert values["target"].value == "aws" and values["target"].source == "flag --target"
    assert values["slaves"].source == "default"  # None: the flag was not given


def test_a_yes_no_flag_at_its_default_is_not_a_given_flag(tmp_path, home):
    write(home / ".invoke.yaml", "imagebake:\n  spot: true\n  wait: false\n")
    values = resolve(tmp_path, flags={"spot": False, "wait": True})
    assert values["spot"].value is True and values["wait"].value is False
    values = resolve(tmp_path, flags={"wait": False})
    assert values["wait"].source == "flag --wait"


def test_bake_vars_from_the_file_and_var_flags_win_key_by_key(tmp_path, home):
    write(home / ".invoke.yaml",
          "imagebake:\n  target: qemu\n  vars:\n    disco_source: none\n    aws_region: x\n")
    target, variables = settings.bake_args(config(tmp_path), {"vars": {"aws_region": "y"}}, {})
    assert target == "qemu"
    assert variables == {"disco_source": "none", "aws_region": "y"}


def test_launch_args_give_a_target_only_the_file_options_it_takes(tmp_path, home):
    write(home / ".invoke.yaml",
          "imagebake:\n  target: docker\n  region: eu-west-1\n  slaves: 2\n  ttl: 2h\n")
    takes = {"docker": (), "qemu": ("ttl",), "aws": ("region", "ttl")}
    target, kwargs = settings.launch_args(config(tmp_path), {"slaves": None}, takes.get, {})
    assert target == "docker"
    assert kwargs == {"name": "imagebake", "slaves": 2, "workers_per_node": None,
                      "wait": True}
    target, kwargs = settings.launch_args(config(tmp_path), {"target": "qemu"}, takes.get, {})
    assert kwargs["ttl"] == "2h" and "region" not in kwargs
    # from a flag, an option always goes: the target's own one-line refusal stays
    _, kwargs = settings.launch_args(config(tmp_path), {"spot": True}, takes.get, {})
    assert kwargs["spot"] is True
    # a flag without a setting passes through as given
    _, kwargs = settings.launch_args(config(tmp_path), {"dry_run": True}, takes.get, {})
    assert kwargs["dry_run"] is True


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("text,needle", [
    ("imagebake:\n  regoin: eu-west-1\n", "unknown key imagebake.regoin in user file"),
    ("imagebake:\n  slaves: four\n", "imagebake.slaves in user file"),
    ("imagebake:\n  slaves: 0\n", "imagebake.slaves in user file"),
    ("imagebake:\n  slaves: true\n", "imagebake.slaves"),
    ("imagebake:\n  spot: 'yes'\n", "imagebake.spot"),
    ("imagebake:\n  ttl: 4 hours\n", "imagebake.ttl"),
    ("imagebake:\n  ttl: -1h\n", "imagebake.ttl"),
    ("imagebake:\n  idle_stop: 0m\n", "imagebake.idle_stop"),
    ("imagebake:\n  allow_cidr: 300.1.2.3/32\n", "imagebake.allow_cidr"),
    ("imagebake:\n  target: moon\n", "imagebake.target"),
    ("imagebake:\n  name: Bad_Name\n", "imagebake.name"),
    ("imagebake:\n  region: 12\n", "imagebake.region"),
    ("imagebake:\n  http_tokens: maybe\n", "imagebake.http_tokens"),
    ("imagebake:\n  vars: [a, b]\n", "imagebake.vars"),
    ("imagebake:\n  vars: {'bad-name': x}\n", "imagebake.vars"),
    ("imagebake: 3\n", "imagebake in user file"),
])
def test_bad_file_is_one_line_naming_the_key_and_the_file(tmp_path, home, text, needle):
    path = write(home / ".invoke.yaml", text)
    with pytest.raises(ImagebakeError) as err:
        resolve(tmp_path)
    message = str(err.value)
    assert needle in message and str(path) in message and "\n" not in message


@pytest.mark.parametrize("env,needle", [
    ({"INVOKE_IMAGEBAKE_REGOIN": "x"}, "unknown key imagebake.regoin"),
    ({"INVOKE_IMAGEBAKE_SLAVES": "many"}, "INVOKE_IMAGEBAKE_SLAVES"),
    ({"INVOKE_IMAGEBAKE_SPOT": "perhaps"}, "INVOKE_IMAGEBAKE_SPOT"),
    ({"INVOKE_IMAGEBAKE_TTL": "forever"}, "INVOKE_IMAGEBAKE_TTL"),
])
def test_bad_environment_is_one_line_naming_the_variable(tmp_path, home, env, needle):
    with pytest.raises(ImagebakeError, match=needle):
        resolve(tmp_path, environ=env)


def test_other_sections_of_the_file_are_invokes_business(tmp_path, home):
    write(home / ".invoke.yaml", "run:\n  echo: true\nimagebake:\n  region: eu-west-1\n")
    assert resolve(tmp_path)["region"].value == "eu-west-1"


# ------------------------------------------------------------------ the CLI
def invoke(tmp_path, *args, env=None, cwd=ROOT):
    full = {**os.environ, "HOME": str(tmp_path / "home"),
            "IMAGEBAKE_STATE_DIR": str(tmp_path / "state"), **(env or {})}
    full = {k: v for k, v in full.items() if not k.startswith("INVOKE_") or k in (env or {})}
    return subprocess.run([str(INVOKE), *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)


def project_with_tasks(tmp_path) -> Path:
    """A project directory whose tasks.py is ours, so its invoke.yaml is the project file."""
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    write(folder / "tasks.py",
          f"exec(compile(open({str(ROOT / 'tasks.py')!r}).read(), 'tasks.py', 'exec'))\n")
    return folder


def line_of(out: str, key: str) -> str:
    return next(ln for ln in out.splitlines() if ln.split()[:1] == [key])


def test_cli_config_prints_each_value_and_where_it_came_from(tmp_path, home):
    user = write(home / ".invoke.yaml", "imagebake:\n  region: eu-west-1\n  key_name: k\n")
    project = project_with_tasks(tmp_path)
    write(project / "invoke.yaml", "imagebake:\n  key_name: proj\n  target: docker\n")
    proc = invoke(tmp_path, "config", "--", "--slaves", "3", cwd=project,
                  env={"INVOKE_IMAGEBAKE_TTL": "2h"})
    assert proc.returncode == 0, proc.stderr
    assert f"user file {user}" in line_of(proc.stdout, "region")
    assert f"project file {project / 'invoke.yaml'}" in line_of(proc.stdout, "key_name")
    assert "proj" in line_of(proc.stdout, "key_name")
    assert "env INVOKE_IMAGEBAKE_TTL" in line_of(proc.stdout, "ttl")
    assert "flag --slaves" in line_of(proc.stdout, "slaves")
    assert "default" in line_of(proc.stdout, "wait")


@pytest.mark.parametrize("text,needle", [
    ("imagebake:\n  regoin: eu-west-1\n", "unknown key imagebake.regoin"),
    ("imagebake:\n  slaves: lots\n", "imagebake.slaves"),
])
@pytest.mark.parametrize("task", [["config"], ["launch", "--target", "docker"]])
def test_cli_bad_file_is_one_line_exit_2_and_creates_nothing(tmp_path, home, text, needle,
                                                             task):
    path = write(home / ".invoke.yaml", text)
    proc = invoke(tmp_path, *task)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and needle in lines[0] and str(path) in lines[0], proc.stderr
    assert not (tmp_path / "state").exists()


def test_cli_launch_takes_its_defaults_from_the_file(tmp_path, home):
    """launch reads the file: its slave count reaches the launcher's own range check."""
    write(home / ".invoke.yaml", "imagebake:\n  target: docker\n  slaves: 65\n")
    proc = invoke(tmp_path, "launch")
    assert proc.returncode == 2 and "--slaves" in proc.stderr and "65" in proc.stderr, \
        proc.stderr
    # and a flag wins over the file
    proc = invoke(tmp_path, "launch", "--target", "moon")
    assert proc.returncode == 2 and "unknown target 'moon'" in proc.stderr, proc.stderr


def test_cli_runtime_file_with_f(tmp_path, home):
    runtime = write(tmp_path / "conf.yaml", "imagebake:\n  region: us-east-2\n")
    proc = invoke(tmp_path, "-f", str(runtime), "config")
    assert proc.returncode == 0, proc.stderr
    assert f"runtime file {runtime}" in line_of(proc.stdout, "region")


def test_allow_world_is_only_ever_a_flag(tmp_path, home):
    # opening a cluster to the world is asked for on the command line, never defaulted
    write(home / ".invoke.yaml", "imagebake:\n  allow_world: true\n")
    with pytest.raises(ImagebakeError, match="allow_world in user file .* only taken as a flag"):
        resolve(tmp_path)
    (home / ".invoke.yaml").unlink()
    with pytest.raises(ImagebakeError, match=r"environment \(INVOKE_IMAGEBAKE_ALLOW_WORLD\)"):
        resolve(tmp_path, environ={"INVOKE_IMAGEBAKE_ALLOW_WORLD": "1"})
    assert resolve(tmp_path, flags={"allow_world": True})["allow_world"].value is True
    assert resolve(tmp_path)["allow_world"].value is False
