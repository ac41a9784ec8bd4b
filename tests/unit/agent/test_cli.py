"""cli.py: `status` exits 1 until ready, a bad spec is one line and exit 2, and the package
runs standalone as imagebake_agent."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from imagebake.agent.spec import dumps, make_spec

from .helpers import HAVE_SSH_KEYGEN, free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def run_cli(args, cwd=REPO, module="imagebake.agent", env_path=REPO):
    env = dict(os.environ, PYTHONPATH=env_path)
    proc = subprocess.Popen([sys.executable, "-m", module] + args, cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out.decode(), err.decode()


def test_status_without_state_is_not_ready(tmp_path):
    rc, out, _ = run_cli(["status", "--json", "--root", str(tmp_path)])
    assert rc == 1 and json.loads(out)["ready"] is False


def test_bad_spec_exits_2_with_one_line(tmp_path):
    (tmp_path / "s.json").write_text('{"version": 1}')
    rc, _, err = run_cli(["run", "--once", "--no-imds", "--root", str(tmp_path),
                          "--spec", "/s.json"])
    assert rc == 2 and "phase spec: failed" in err




@pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="ssh-keygen is not installed")
def test_standalone_package_runs_a_master_once(tmp_path):
    """Copied to /opt/imagebake/imagebake_agent, it runs as `python3 -m imagebake_agent`."""
    opt = tmp_path / "opt"
    shutil.copytree(os.path.join(REPO, "imagebake", "agent"), str(opt / "imagebake_agent"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    root = tmp_path / "root"
    spec = make_spec("demo", "master", master_address="127.0.0.1", hostname="master",
                     join_port=free_port(), expected_nodes=0)
    (tmp_path / "root").mkdir()
    (root / "spec.json").write_text(dumps(spec))
    # no sshd/dnsmasq here: put harmless stand-ins first on PATH
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    for name in ("sshd", "dnsmasq", "hostname"):
        (fakebin / name).write_text("#!/bin/sh\nexit 0\n")
        os.chmod(str(fakebin / name), 0o755)
    env = dict(os.environ, PYTHONPATH=str(opt),
               PATH=str(fakebin) + ":" + os.environ.get("PATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagebake_agent", "run", "--once", "--no-imds",
         "--root", str(root), "--spec", "/spec.json", "--bind", "127.0.0.1",
         "--address", "127.0.0.1", "--hostname", "master", "--allow-loopback"],
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    for phase in ("spec", "keys", "services", "serve", "trust", "dns", "disco"):
        assert f"phase {phase}: ok" in err.decode()
    proc = subprocess.Popen([sys.executable, "-m", "imagebake_agent", "status", "--json",
                             "--root", str(root)], env=env, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=60)
    report = json.loads(out.decode())
    assert proc.returncode == 0 and report["ready"] is True
    assert report["disco"] == "absent: config written, not started"
