"""`invoke ddfs-load` on real Disco (issue 20 item 1): blobs read by Disco's default reader,
the chunk format read with chain_reader, a re-load that stores nothing new, and the faults
(an unsafe zip, Ctrl-C, a storage node killed midway): one line, the tag as it was, no pusher
left on the master. One 2-slave cluster, in file order (the last test kills a slave)."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from imagebake.bench.disco_bench import write_big_sample
from imagebake.disco import jobs, smoke
from imagebake.targets.docker import cluster as docker_cluster
from imagebake.targets.docker.cluster import container_name

from .helpers import sh, temp_files

TARGET = docker_cluster.DockerTarget()
PUSHER_MARK = "The in-cluster half of"  # in the pusher's -c code, so in its command line


@pytest.fixture(scope="module")
def dl(with_disco, launcher):
    return launcher("h4dl", 2)


def invoke(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], capture_output=True,
                          text=True, timeout=timeout)


def blobs(record: dict, tag: str) -> list[str]:
    out = sh(record, "master", f"ddfs blobs {tag} 2>/dev/null || true", user="disco").stdout
    return sorted(out.split())


def pushers(record: dict) -> int:
    out = sh(record, "master", "ps -eo args=", check=False).stdout
    return sum(PUSHER_MARK in line for line in out.splitlines())


def run_job(record: dict, *args: str):
    return jobs.run_script(TARGET, record, smoke.NGRAM_JOB, list(args), timeout=300)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grams")
    paths = smoke.write_sample(folder, files=3, lines=3000)
    with gzip.open(folder / "extra.tsv.gz", "wb") as out:  # a compressed input too
        out.write(paths[2].read_bytes())
    paths[2].unlink()
    return folder


def _answer(folder: Path) -> str:
    job = smoke.load_job_module()
    lines = []
    for path in sorted(folder.iterdir()):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines += data.decode().splitlines(keepends=True)
    return job.to_csv(job.run_local(lines, 5))


def test_blobs_are_read_by_disco_default_reader_and_a_reload_adds_nothing(dl, sample,
                                                                          state_dir):
    inputs = [a for p in sorted(sample.iterdir()) for a in ("--input", str(p))]
    out = invoke("ddfs-load", "--name", "h4dl", *inputs, "--tag", "data:h4blobs")
    assert out.returncode == 0, out.stderr
    # three small inputs, one stream of lines: one blob, 2 replicas (2 slaves)
    assert "as 1 new blob(s) under tag://data:h4blobs" in out.stdout, out.stdout
    assert "MB/s" in out.stderr  # progress
    stored = blobs(dl, "data:h4blobs")
    assert len(stored) == 1 * 2
    run = run_job(dl, "tag://data:h4blobs", "5")  # no --chunked: Disco's default reader
    assert run.ok, run.reason
    assert run.stdout.strip() == _answer(sample).strip()
    again = invoke("ddfs-load", "--name", "h4dl", *inputs, "--tag", "data:h4blobs")
    assert again.returncode == 0, again.stderr
    assert "0 new blob(s), 1 already there" in again.stdout and "(tag unchanged)" in again.stdout
    assert blobs(dl, "data:h4blobs") == stored
    assert pushers(dl) == 0


READ_AHEAD = """
import os
from disco import comm
path = "/tmp/imagebake-read-ahead.tsv"
with open(path, "wb") as out:
    out.write(b"of the\\t1999\\t12\\t3\\t1\\n" * 200000)
try:
    stream = comm.open_local(path)
    line = next(iter(stream))
    print(len(line), os.lseek(stream.fileno(), 0, os.SEEK_CUR), comm.BUFFER_SIZE)
finally:
    os.unlink(path)
"""


def test_a_task_reads_a_local_blob_ahead_in_large_blocks(dl):
    """Disco's default reader opens a blob on the task's own node with comm.open_local. On
    Python 3 that was an unbuffered io.FileIO (compat's `file`), which reads a line one byte
    per read(2): the 2-gram job over blobs spent its time there (issue 20; our patch
    provision/disco/patches/py3/disco-*/*-local-files-buffered.patch). After one line is
    read, the file's offset must be a whole block ahead, not at the line's end."""
    out = sh(dl, "node01", f"python3 -c '{READ_AHEAD}'", user="disco").stdout.split()
    line, offset, block = map(int, out)
    assert line == 19 and offset == block == 2**20, out


def test_the_chunk_format_is_read_with_chain_reader(dl, sample, state_dir):
    inputs = [a for p in sorted(sample.iterdir()) for a in ("--input", str(p))]
    out = invoke("ddfs-load", "--name", "h4dl", *inputs, "--tag", "data:h4chunks", "--chunk")
    assert out.returncode == 0, out.stderr
    run = run_job(dl, "--chunked", "tag://data:h4chunks", "5")
    assert run.ok, run.reason
    assert run.stdout.strip() == _answer(sample).strip()


@pytest.mark.parametrize("member", ["../../etc/passwd", "/etc/hostname"])
def test_a_zip_member_outside_its_folder_is_one_line_and_stores_nothing(dl, state_dir,
                                                                        tmp_path, member):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ok.csv", "of the\t1999\t12\t3\t1\n")
        archive.writestr(member, "x\n")
    out = invoke("ddfs-load", "--name", "h4dl", "--input", str(path), "--tag", "data:h4evil")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "outside" in out.stderr and blobs(dl, "data:h4evil") == []


@pytest.fixture(scope="module")
def web(dl, images, sample):
    """A web server in the cluster's network (a container of the node image), serving the
    sample: the slaves download from it, nothing leaves the host."""
    name = "imagebake-h4dl-web"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--init", "--name", name, "--network",
                    dl["network"], "--entrypoint", "python3",
                    images["node"], "-m", "http.server", "8000", "--directory", "/srv"],
                   check=True, capture_output=True)
    for path in sample.iterdir():
        subprocess.run(["docker", "cp", str(path), f"{name}:/srv/"], check=True,
                       capture_output=True)
    address = subprocess.run(  # by address: the nodes' resolver (dnsmasq) knows only the
        ["docker", "inspect", "--format",  # cluster's own short names
         "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name],
        check=True, capture_output=True, text=True).stdout.strip()
    yield f"http://{address}:8000"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_http_inputs_are_downloaded_by_the_slaves(dl, web, sample, state_dir):
    import hashlib

    gz = sample / "extra.tsv.gz"
    args = []
    for path in sorted(sample.iterdir()):
        args += ["--input", f"{web}/{path.name}", "--sha256",
                 hashlib.sha256(path.read_bytes()).hexdigest() if path == gz else "-"]
    out = invoke("ddfs-load", "--name", "h4dl", *args, "--tag", "data:h4http")
    assert out.returncode == 0, out.stderr
    assert "as 3 new blob(s)" in out.stdout, out.stdout
    run = run_job(dl, "tag://data:h4http", "5")
    assert run.ok, run.reason
    assert run.stdout.strip() == _answer(sample).strip()


def test_a_failed_download_names_the_url_and_status_and_leaves_the_tag(dl, web, state_dir):
    before = blobs(dl, "data:h4http")
    out = invoke("ddfs-load", "--name", "h4dl", "--input", f"{web}/absent.tsv", "--tag",
                 "data:h4http")
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) >= 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert f"download of {web}/absent.tsv failed: HTTP 404" in last, last
    assert blobs(dl, "data:h4http") == before
    assert pushers(dl) == 0


def _big(tmp_path: Path) -> Path:
    """An input that takes the pusher several seconds even on an idle host (~60 MB/s there
    since 54f1558: 150 MB was all stored before the Ctrl-C or the kill of the tests below)."""
    [path] = write_big_sample(tmp_path, 600, files=1)
    return path


def _wait_for_pusher(record: dict, proc: subprocess.Popen, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while pushers(record) == 0:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the pusher never started"
        time.sleep(0.2)
    time.sleep(1.5)  # some blobs in flight


def _laptop_tmp(tmp_path: Path) -> dict:
    """The environment of a run whose TMPDIR is TMP_PATH/laptop-tmp (to check it stays
    empty: no temporary file left on the laptop)."""
    (tmp_path / "laptop-tmp").mkdir()
    return {**os.environ, "TMPDIR": str(tmp_path / "laptop-tmp")}


def test_ctrl_c_during_a_load_leaves_the_tag_and_no_pusher(dl, state_dir, tmp_path):
    before, temps = blobs(dl, "data:h4blobs"), temp_files(dl)
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "ddfs-load", "--name", "h4dl",
                             "--input", str(_big(tmp_path)), "--tag", "data:h4blobs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_laptop_tmp(tmp_path))
    _wait_for_pusher(dl, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert blobs(dl, "data:h4blobs") == before
    end = time.monotonic() + 30
    while pushers(dl) and time.monotonic() < end:
        time.sleep(0.5)
    assert pushers(dl) == 0
    assert list((tmp_path / "laptop-tmp").iterdir()) == [] and temp_files(dl) == temps


def test_a_storage_node_killed_mid_load_fails_in_one_line_and_leaves_the_tag(dl, state_dir,
                                                                            tmp_path):
    before, temps = blobs(dl, "data:h4blobs"), temp_files(dl, ["master", "node01"])
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "ddfs-load", "--name", "h4dl",
                             "--input", str(_big(tmp_path)), "--tag", "data:h4blobs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_laptop_tmp(tmp_path))
    _wait_for_pusher(dl, proc)
    subprocess.run(["docker", "kill", container_name("h4dl", "node02")], check=True,
                   capture_output=True)
    _, err = proc.communicate(timeout=600)
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 1, err
    assert last.startswith("error: ddfs-load failed: ") and "tag data:h4blobs not changed" in last
    assert blobs(dl, "data:h4blobs") == before
    assert pushers(dl) == 0
    assert list((tmp_path / "laptop-tmp").iterdir()) == []
    assert temp_files(dl, ["master", "node01"]) == temps
