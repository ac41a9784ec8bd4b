"""Issue 20's bad input and faults on real Disco, the ones test_ddfs_load.py and test_job.py
leave out: a symlink zip member, a URL that is not http(s)/s3, a checksum mismatch (checked
on the laptop for a local file, on the slave for a download), unsafe zip members in a
download, the s3 path (presigned on the laptop, downloaded by the slaves from a moto server)
with a missing and an unreadable object, a job file that does not exist and a failed job
asked for --results. Each: one `error:` line, exit 2 (bad input) or 1 (failure), the tag as
it was, no temporary file left on the laptop (the run's own TMPDIR stays empty) nor on the
master and slaves (/tmp and /var/tmp as they were), no pusher left running.

The downloads come from servers on the cluster network's gateway address (the host's side
of the cluster's bridge), bound to that address only: a plain HTTP server and a moto S3
server. One 2-slave cluster for the file."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from imagebake import state
from imagebake.disco import smoke
from tests.archives import zip_of

from .helpers import sh, temp_files

NAME = "h7-faults"
TAG = "data:h7base"
PUSHER_MARK = "The in-cluster half of"  # in the pusher's -c code, so in its command line
PROBE = str(Path(smoke.__file__).parent / "probe_job.py")
TEXT = b"of the\t1999\t12\t3\t1\n"


@pytest.fixture(scope="module")
def fc(with_disco, launcher):
    return launcher(NAME, 2)


def hosts(record: dict) -> list[str]:
    return ["master", *state.node_names(record)]


def invoke(*args: str, env: dict | None = None, timeout: int = 600):
    """Run `invoke ARGS` with a TMPDIR of its own (ENV added, its None values removed);
    (process, what it left in that TMPDIR)."""
    tmp = Path(tempfile.mkdtemp(prefix="h7-laptop-tmp-"))
    given = {**os.environ, **(env or {}), "TMPDIR": str(tmp)}
    try:
        proc = subprocess.run([sys.executable, "-m", "invoke", *args], capture_output=True,
                              text=True, timeout=timeout,
                              env={k: v for k, v in given.items() if v is not None})
        return proc, sorted(p.name for p in tmp.iterdir())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def blobs(record: dict, tag: str) -> list[str]:
    out = sh(record, "master", f"ddfs blobs {tag} 2>/dev/null || true", user="disco").stdout
    return sorted(out.split())


def pushers(record: dict) -> dict[str, int]:
    """Pushers (on the master) and fetchers (on the slaves) still running, by host."""
    return {host: sum(PUSHER_MARK in line for line in
                      sh(record, host, "ps -eo args=", check=False).stdout.splitlines())
            for host in hosts(record)}


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The run's single `error:` line, which is its last (progress lines may come first)."""
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def base(fc, state_dir, tmp_path_factory):
    """TAG holding one loaded input: the tag every fault below must leave as it was."""
    [path] = smoke.write_sample(tmp_path_factory.mktemp("base"), files=1, lines=500)
    proc, _ = invoke("ddfs-load", "--name", NAME, "--input", str(path), "--tag", TAG)
    assert proc.returncode == 0, proc.stderr
    stored = blobs(fc, TAG)
    assert len(stored) == 2  # one blob, 2 replicas
    return stored


def check_nothing_changed(record: dict, stored: list[str], before: dict, left: list[str]):
    assert blobs(record, TAG) == stored  # the tag as it was
    assert left == []  # nothing left in the laptop's TMPDIR
    assert temp_files(record) == before  # nor on the master and slaves
    assert set(pushers(record).values()) == {0}


# ---------------------------------------------------------------- refused on the laptop
@pytest.mark.parametrize("case,says", [
    ("symlink member", "zip member 'link.csv' of data.zip is a symlink: refused"),
    ("not http or s3", "unsupported input 'ftp://example.invalid/a.tsv'"),
    ("checksum mismatch", "checksum mismatch for {path}: sha256 {real}, expected " + "0" * 64),
])
def test_bad_local_input_is_one_line_exit_2_and_changes_nothing(fc, base, state_dir, tmp_path,
                                                                case, says):
    path = tmp_path / "a.tsv"
    path.write_bytes(TEXT * 3)
    args = ["--input", str(path)]
    if case == "symlink member":
        path = zip_of(tmp_path / "data.zip", [("ok.csv", TEXT),
                                              ("link.csv", b"/etc/shadow", 0o120777)])
        args = ["--input", str(path)]
    elif case == "not http or s3":
        args += ["--input", "ftp://example.invalid/a.tsv"]
    else:
        args += ["--sha256", "0" * 64]
    before = temp_files(fc)
    proc, left = invoke("ddfs-load", "--name", NAME, *args, "--tag", TAG)
    assert proc.returncode == 2, proc.stderr
    real = hashlib.sha256(path.read_bytes()).hexdigest()
    assert says.format(path=path, real=real) in one_error_line(proc)
    check_nothing_changed(fc, base, before, left)


# ---------------------------------------------------------------- servers the slaves reach
def gateway(record: dict) -> str:
    """The host's address on the cluster's bridge network."""
    return subprocess.run(["docker", "network", "inspect", "--format",
                           "{{(index .IPAM.Config 0).Gateway}}", record["network"]],
                          check=True, capture_output=True, text=True).stdout.strip()


def reachable(record: dict, url: str) -> str:
    """'' when every slave can open URL, else what one of them said."""
    code = ("import sys, urllib.request\n"
            "try:\n"
            "    urllib.request.urlopen(sys.argv[1], timeout=10).read()\n"
            "except urllib.error.HTTPError:\n"
            "    pass\n")
    for node in state.node_names(record):
        proc = sh(record, node, f"python3 -c '{code}' {url}", check=False)
        if proc.returncode != 0:
            return f"{node}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    return ""


@pytest.fixture(scope="module")
def web(fc, tmp_path_factory):
    """An HTTP server on the gateway address serving a folder: base URL and the folder."""
    folder = tmp_path_factory.mktemp("web")
    address = gateway(fc)
    try:
        server = http.server.ThreadingHTTPServer(
            (address, 0), partial(Quiet, directory=str(folder)))
    except OSError as exc:
        pytest.skip(f"cannot listen on the cluster network's gateway {address} ({exc}): the "
                    "slaves' downloads need a server they reach")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://{address}:{server.server_port}"
    why = reachable(fc, url + "/")
    if why:
        server.shutdown()
        pytest.skip(f"the slaves cannot reach the host at {url} ({why}): a firewall between "
                    "the containers and the host?")
    yield url, folder
    server.shutdown()
    server.server_close()


class Quiet(http.server.SimpleHTTPRequestHandler):
    """The folder's files; /slow.tsv: SLOW_PIECES pieces of lines, one every 0.2 s, and
    how each such transfer ended ("done" or "broken") appended to SLOW_ENDS."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        if self.path != "/slow.tsv":
            return super().do_GET()
        piece = TEXT * 5000
        self.send_response(200)
        self.send_header("Content-Length", str(len(piece) * SLOW_PIECES))
        self.end_headers()
        try:
            for _ in range(SLOW_PIECES):
                self.wfile.write(piece)
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            SLOW_ENDS.append("broken")
            return None
        SLOW_ENDS.append("done")
        return None


SLOW_PIECES = 150  # 30 s
SLOW_ENDS: list[str] = []


@pytest.mark.parametrize("case,says", [
    ("checksum mismatch", "checksum mismatch for {url}: sha256 {real}, expected " + "0" * 64),
    ("symlink member", "zip member 'link.csv' of {url} is a symlink: refused"),
    ("member outside", "zip member '../../x.csv' of {url} resolves outside its folder"),
])
def test_a_bad_download_fails_on_the_slave_in_one_line_and_changes_nothing(
        fc, base, web, state_dir, case, says):
    url, folder = web
    if case == "checksum mismatch":
        name = "c.tsv.gz"
        (folder / name).write_bytes(gzip.compress(TEXT * 4))
        args = ["--input", f"{url}/{name}", "--sha256", "0" * 64]
    else:
        name = "link.zip" if case == "symlink member" else "out.zip"
        member = ("link.csv", b"/etc/shadow", 0o120777) if case == "symlink member" \
            else ("../../x.csv", TEXT)
        zip_of(folder / name, [("ok.csv", TEXT), member])
        args = ["--input", f"{url}/{name}"]
    before = temp_files(fc)
    proc, left = invoke("ddfs-load", "--name", NAME, *args, "--tag", TAG)
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc)
    real = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert line.startswith("error: ddfs-load failed: ") and line.endswith(
        f"; tag {TAG} not changed"), line
    assert says.format(url=f"{url}/{name}", real=real) in line, line
    check_nothing_changed(fc, base, before, left)


def test_ctrl_c_while_the_slaves_download_leaves_the_tag_and_nothing_running(
        fc, base, web, state_dir, tmp_path):
    """Once the laptop has sent everything, the load goes on in the cluster (the slaves
    download): Ctrl-C then must still stop it before the tag changes."""
    url, _ = web
    before = temp_files(fc)
    tmp = tmp_path / "laptop-tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "ddfs-load", "--name", NAME,
                             "--input", f"{url}/slow.tsv", "--tag", TAG],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp)})
    ends = len(SLOW_ENDS)
    end = time.monotonic() + 120
    while not any(pushers(fc)[node] for node in state.node_names(fc)):  # a slave is downloading
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "no slave started the download"
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err
    end = time.monotonic() + SLOW_PIECES * 0.2 + 30  # long enough for the download to end
    while (len(SLOW_ENDS) == ends or set(pushers(fc).values()) != {0}) \
            and time.monotonic() < end:
        time.sleep(1)
    assert SLOW_ENDS[ends:] == ["broken"]  # the download was stopped, not finished
    left = sorted(p.name for p in tmp.iterdir())
    check_nothing_changed(fc, base, before, left)


# ---------------------------------------------------------------- s3, from a moto server
@pytest.fixture(scope="module")
def s3(fc):
    """A moto S3 server on the gateway address with bucket `grams`; the environment that
    points the laptop's boto3 at it (made-up credentials, no profile)."""
    moto_server = pytest.importorskip("moto.server", reason="moto (a dev dependency) is not "
                                      "installed: the s3 path needs its server")
    address = gateway(fc)
    try:
        server = moto_server.ThreadedMotoServer(ip_address=address, port=0, verbose=False)
        server.start()
    except OSError as exc:
        pytest.skip(f"cannot listen on the cluster network's gateway {address} ({exc})")
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    why = reachable(fc, endpoint + "/")
    if why:
        server.stop()
        pytest.skip(f"the slaves cannot reach the host at {endpoint} ({why}): a firewall "
                    "between the containers and the host?")
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
           "AWS_PROFILE": None, "AWS_SESSION_TOKEN": None}
    import boto3

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            region_name="us-east-1")
    client = session.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="grams")
    yield env, client, session, endpoint
    server.stop()


def test_an_s3_object_is_presigned_here_and_stored_by_the_slaves(fc, base, s3, state_dir,
                                                                 tmp_path):
    env, client, _, _ = s3
    lines = b"".join(b"gram%d x\t1999\t%d\t1\t1\n" % (i, i) for i in range(2000))
    client.put_object(Bucket="grams", Key="dir/a.tsv.gz", Body=gzip.compress(lines))
    proc, left = invoke("ddfs-load", "--name", NAME, "--input", "s3://grams/dir/a.tsv.gz",
                        "--tag", "data:h7s3", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "stored 1 input(s)" in proc.stdout and "as 1 new blob(s)" in proc.stdout, proc.stdout
    got = sh(fc, "master", "ddfs cat data:h7s3", user="disco").stdout.encode()
    assert got == lines
    assert left == []


@pytest.mark.parametrize("case,says", [
    ("missing key", "input s3://grams/dir/absent.tsv.gz: no such object (HTTP 404); nothing "
                    "stored"),
    ("unreadable", "input s3://grams/private/a.tsv.gz: not readable with your credentials "
                   "(HTTP 403); nothing stored"),
])
def test_a_missing_or_unreadable_s3_object_is_one_line_exit_2_and_changes_nothing(
        fc, base, s3, state_dir, case, says):
    env, client, session, endpoint = s3
    key = "dir/absent.tsv.gz" if case == "missing key" else "private/a.tsv.gz"
    if case == "unreadable":  # a user allowed to read dir/* only; moto then checks IAM
        from moto.core.authorization import enable_iam_authentication

        client.put_object(Bucket="grams", Key=key, Body=gzip.compress(TEXT))
        iam = session.client("iam", endpoint_url=endpoint)
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="dir-only", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": '
            '"s3:GetObject", "Resource": "arn:aws:s3:::grams/dir/*"}]}'))
        made = iam.create_access_key(UserName="reader")["AccessKey"]
        env = {**env, "AWS_ACCESS_KEY_ID": made["AccessKeyId"],
               "AWS_SECRET_ACCESS_KEY": made["SecretAccessKey"]}
        guard = enable_iam_authentication()
    else:
        guard = _nothing()
    before = temp_files(fc)
    with guard:
        proc, left = invoke("ddfs-load", "--name", NAME, "--input", f"s3://grams/{key}",
                            "--tag", TAG, env=env)
    assert proc.returncode == 2, proc.stderr
    assert one_error_line(proc) == f"error: {says}"
    check_nothing_changed(fc, base, before, left)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------- invoke job
def jobs_on_master(record: dict) -> str:
    return sh(record, "master", "ls -d /tmp/imagebake-job.* 2>/dev/null || true").stdout.strip()


def test_a_job_file_that_does_not_exist_is_one_line_exit_2(fc, state_dir, tmp_path):
    before = temp_files(fc)
    proc, left = invoke("job", "--name", NAME, str(tmp_path / "absent.py"), "--", "x")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: job file not found: "
                                                f"{tmp_path / 'absent.py'}"]
    assert left == [] and temp_files(fc) == before


def test_a_failed_job_asked_for_results_writes_no_file_and_leaves_nothing(fc, state_dir,
                                                                          tmp_path):
    results = tmp_path / "out" / "counts.tsv"
    results.parent.mkdir()
    before = temp_files(fc)
    proc, left = invoke("job", "--name", NAME, PROBE, "--results", str(results), "--",
                        "raise", "2", "0")
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc)
    assert line.startswith("error: job Job@") and line.endswith(
        "ValueError: imagebake probe: map failed on purpose"), line
    assert list(results.parent.iterdir()) == []  # no results file, no half-written one
    assert left == [] and temp_files(fc) == before and jobs_on_master(fc) == ""
