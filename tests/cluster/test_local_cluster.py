"""The local cluster is ready by the product's definition, and stays safe.

Ready means: every node in Disco's config with a string worker count (master
left out), strict host-key SSH and Erlang slave:start from the master as
`disco`, DNS for every name through the master, and no secret visible to
`docker inspect`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from imagebake import state
from imagebake.disco import smoke
from imagebake.targets.docker import cluster as docker_cluster
from imagebake.targets.docker.cluster import container_name

from .helpers import disco_config, fingerprint, read, sh


def names(record):
    return ["master", *state.node_names(record)]


def test_every_node_in_disco_config_with_string_worker_count(cluster):
    hosts = disco_config(cluster)["hosts"]
    assert sorted(h[0] for h in hosts) == sorted(state.node_names(cluster))
    for name, workers in hosts:
        assert isinstance(workers, str) and workers.isdigit() and int(workers) > 0, (name, workers)


def test_master_left_out_of_disco_hosts_when_it_has_no_workers(cluster):
    assert "master" not in [h[0] for h in disco_config(cluster)["hosts"]]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_disco_ssh_to_node_with_strict_host_key_checking(cluster, index):
    node = state.node_names(cluster)[index]
    out = sh(cluster, "master",
             f"ssh -o StrictHostKeyChecking=yes -o BatchMode=yes {node} hostname", user="disco")
    assert out.stdout.strip() == node


def test_erlang_master_starts_remote_node_on_every_slave_over_ssh(cluster):
    # What Disco's master does to start its workers (with or without Disco in the images).
    proc = sh(cluster, "master", smoke.erlang_check_command(state.node_names(cluster)),
              user="disco", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for node in state.node_names(cluster):
        assert f"{node} ok imagebake_smoke@{node}" in proc.stdout


def _rogue(cluster, command: str) -> subprocess.CompletedProcess:
    """A container on the cluster's network that is not a member (no spec, no token)."""
    return subprocess.run(
        ["docker", "run", "--rm", "--network", cluster["network"], "--hostname", "rogue",
         "--add-host", f"master:{cluster['master_ip']}", "--label",
         f"imagebake.cluster={cluster['name']}", "--entrypoint", "sh",
         cluster["images"]["node"], "-c", command],
        capture_output=True, text=True, timeout=120)


def _ping_master(cluster, cookie: str) -> str:
    probe = _rogue(cluster, "erl -sname rogue -setcookie " + cookie + " -noshell -eval "
                   "'io:format(\"~p~n\", [net_adm:ping(imagebake_probe@master)]), halt().'")
    return probe.stdout.strip()


def test_container_with_another_cookie_is_refused(cluster):
    sh(cluster, "master", "erl -sname imagebake_probe -detached -noinput", user="disco")
    try:
        time.sleep(1)
        assert _ping_master(cluster, "WRONGCOOKIE" * 3) == "pang"
        # control: the same network and the right cookie get in
        assert _ping_master(cluster, cluster["cookie"]) == "pong"
    finally:
        sh(cluster, "master", "pkill -f 'sname [i]magebake_probe' || true")


def test_every_node_resolves_every_cluster_name_through_master_dnsmasq(cluster):
    for host in state.node_names(cluster):
        resolv = read(cluster, host, "/etc/resolv.conf")
        assert f"nameserver {cluster['master_ip']}" in resolv.splitlines()[0:5], resolv
        for name in names(cluster):
            out = sh(cluster, host, f"getent hosts {name}").stdout.split()
            assert out and out[1] == name, (host, name, out)


def test_no_secret_in_docker_inspect(cluster):
    secrets = [cluster["token"], cluster["cookie"], cluster["launcher_key"]]
    ids = subprocess.run(["docker", "ps", "-aq", "--filter",
                          f"label=imagebake.cluster={cluster['name']}"],
                         capture_output=True, text=True).stdout.split()
    dumps = [subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True).stdout]
    for ref in cluster["images"].values():
        dumps.append(subprocess.run(["docker", "image", "inspect", ref],
                                    capture_output=True, text=True).stdout)
        dumps.append(subprocess.run(["docker", "history", "--no-trunc", ref],
                                    capture_output=True, text=True).stdout)
    for text in dumps:
        assert text.strip()
        for secret in secrets:
            assert secret not in text


def test_spec_is_readable_only_by_root_in_the_container(cluster):
    out = sh(cluster, "node01", "stat -c '%a %U' /run/imagebake/spec.json").stdout.split()
    assert out == ["600", "root"]
    # a spec from a file is not copied into the container's writable layer
    assert sh(cluster, "node01", "test -e /var/lib/imagebake/spec.json", check=False).returncode
    cookie = sh(cluster, "node01", "stat -c '%a %U' /home/disco/.erlang.cookie").stdout.split()
    assert cookie == ["400", "disco"]


FORGED_JOIN = r'''
import hashlib, hmac, json, os, time, binascii, urllib.request, urllib.error
msg = {"type": "join", "cluster": "%(cluster)s", "nonce": binascii.hexlify(os.urandom(16)).decode(),
       "ts": int(time.time()), "hostname": "rogue", "addresses": ["10.213.255.9"], "cores": 2,
       "disco_pubkey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRoguE disco@rogue",
       "host_pubkey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRoguE"}
key = os.urandom(32)
body = json.dumps({"msg": msg, "mac": hmac.new(key, json.dumps(msg, sort_keys=True,
       separators=(",", ":")).encode(), hashlib.sha256).hexdigest()}).encode()
req = urllib.request.Request("http://%(master)s:8990/v1/join", data=body,
                             headers={"Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req, timeout=10).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
'''


def test_forged_join_is_rejected_and_writes_nothing(cluster):
    before = fingerprint(cluster, "master")
    script = FORGED_JOIN % {"cluster": cluster["name"], "master": cluster["master_ip"]}
    out = _rogue(cluster, f"python3 -c '{script}'")
    assert out.stdout.strip() == "403", out.stdout + out.stderr
    assert fingerprint(cluster, "master") == before
    assert "rogue" not in read(cluster, "master", "/etc/imagebake/hosts")


def test_agent_rerun_on_every_node_changes_nothing(cluster):
    before = {h: fingerprint(cluster, h) for h in names(cluster)}
    for host in state.node_names(cluster):
        sh(cluster, host, "imagebake-agent run --once")
    assert {h: fingerprint(cluster, h) for h in names(cluster)} == before


def test_status_reports_ready_with_every_node(cluster):
    report = docker_cluster.status(cluster)
    assert report["ready"], report
    assert [n["hostname"] for n in report["nodes"] if n["joined"]] == state.node_names(cluster)
    assert report["missing"] == []


def test_master_restart_nodes_rejoin_same_cookie_no_duplicates(launcher):
    record = launcher("restart", 2)
    cookies = {h: read(record, h, "/home/disco/.erlang.cookie") for h in ["master", "node01"]}
    subprocess.run(["docker", "restart", container_name("restart", "master")], check=True,
                   capture_output=True)
    docker_cluster.wait_ready(record, time.time())
    for host, cookie in cookies.items():
        assert read(record, host, "/home/disco/.erlang.cookie") == cookie
    for host in ["master", "node01", "node02"]:
        for path in ("/home/disco/.ssh/known_hosts", "/home/disco/.ssh/authorized_keys"):
            lines = [ln for ln in read(record, host, path).splitlines() if ln.strip()]
            assert lines and len(lines) == len(set(lines)), (host, path, lines)
    ok, message = smoke.smoke(record)
    assert ok, message


def test_node_killed_during_join_cluster_ready_without_it(launcher):
    record = launcher("killed", 3, wait=False)
    subprocess.run(["docker", "kill", container_name("killed", "node03")], check=True,
                   capture_output=True)
    docker_cluster.wait_ready(record, time.time())
    report = docker_cluster.status(record)
    assert report["ready"] and report["missing"] == ["node03"]
    assert sorted(h[0] for h in disco_config(record)["hosts"]) in (
        ["node01", "node02"], ["node01", "node02", "node03"])


def test_grow_adds_nodes_without_restarting_master(launcher):
    record = launcher("grow", 1)
    started = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}}", container_name("grow", "master")],
        capture_output=True, text=True).stdout
    record = docker_cluster.DockerTarget().grow(record, 2)
    assert sorted(h[0] for h in disco_config(record)["hosts"]) == ["node01", "node02", "node03"]
    assert subprocess.run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}}", container_name("grow", "master")],
        capture_output=True, text=True).stdout == started
    out = sh(record, "master", "ssh -o StrictHostKeyChecking=yes -o BatchMode=yes node03 true",
             user="disco", check=False)
    assert out.returncode == 0, out.stderr


def test_several_clusters_coexist_and_destroy_touches_only_its_own(launcher, cluster):
    other = launcher("other", 1)
    assert docker_cluster.status(cluster, per_node=False)["ready"]
    print(docker_cluster.DockerTarget().destroy("other", other))
    assert docker_cluster.status(cluster, per_node=False)["ready"]
    assert state.load("other") is None
    for kind in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
        left = subprocess.run(["docker", *kind, "--filter", "label=imagebake.cluster=other"],
                              capture_output=True, text=True).stdout.split()
        assert left == [], kind
    assert not (state.state_dir() / "clusters" / "other.d").exists()  # its spec files
    assert "nothing to destroy" in docker_cluster.DockerTarget().destroy("other", None)


def test_status_json_lists_every_node_state(cluster, state_dir):
    out = subprocess.run([sys.executable, "-m", "invoke", "status", "--name", cluster["name"],
                          "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert {n["hostname"]: n["state"] for n in report["nodes"]} == {
        n: "running" for n in state.node_names(cluster)}


def test_master_dnsmasq_forwards_other_names_upstream(cluster):
    # Only Docker's embedded resolver knows CONTAINER.NETWORK names: node01 asks the
    # master's dnsmasq, which must forward them to the master's original upstream.
    # (Dotless names stay local: dnsmasq runs with domain-needed.)
    fqdn = f"{container_name(cluster['name'], 'node02')}.{cluster['network']}"
    out = sh(cluster, "node01", f"getent hosts {fqdn}", check=False)
    assert out.returncode == 0 and out.stdout.split()[1] == fqdn, out.stdout + out.stderr


def test_ddfs_load_without_disco_says_so_in_one_line(without_disco, cluster, tmp_path):
    sample = tmp_path / "grams.tsv"
    sample.write_text("of the\t1999\t12\t3\t1\n")
    out = subprocess.run([sys.executable, "-m", "invoke", "ddfs-load", "--name", cluster["name"],
                          "--input", str(sample), "--tag", "data:2grams"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: no Disco in the images of cluster {cluster['name']!r} (baked with "
        "disco_source=none): there is no DDFS to load into; bake with the vendored Disco "
        "(`invoke bake`) and launch again"]
