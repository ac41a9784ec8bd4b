"""`invoke ddfs-load` end to end on loopback: the laptop half (imagebake.disco.ddfs_load)
streams to the real pusher (ddfs_push.py, run here with `sh -c` as the target's exec channel
would run it on the master), which talks DDFS's push protocol to a fake DDFS master and two
fake storage nodes (node01 = 127.0.0.1, node02 = localhost: one HTTP server)."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.server
import json
import os
import subprocess
import threading
import time
import urllib.parse
import zipfile

import pytest

from imagebake import state
from imagebake.disco import ddfs_load, ddfs_push
from imagebake.errors import ImagebakeError
from tests.archives import zip_of

TEXT = b"of the\t1999\t12\t3\t1\n"


class FakeDDFS(http.server.ThreadingHTTPServer):
    """new_blob, PUT to a node, GET/POST of a tag: the calls the pusher makes."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.blobs: dict[str, bytes] = {}  # disco:// url -> bytes
        self.tags: dict[str, list[list[str]]] = {}
        self.tag_posts = 0
        self.dead: set[str] = set()  # node names whose PUTs fail
        self.replicas = 2
        self.files: dict[str, bytes] = {}
        self.tag_reads: list[str] = []  # "ok" or "refused": the answers to GET /ddfs/tag/
        self.tag_read_delay = 0.0
        self.refuse_tag_reads = False
        self.chunks: list[list[int]] = []  # per PUT: its chunk sizes ([] for Content-Length)
        self.lock = threading.Lock()

    def hosts(self) -> dict[str, str]:
        return {"node01": "127.0.0.1", "node02": "localhost"}

    def tag_bytes(self, tag: str) -> list[bytes]:
        return [self.blobs[replicas[0]] for replicas in self.tags.get(tag, [])]


class Handler(http.server.BaseHTTPRequestHandler):
    server: FakeDDFS

    def log_message(self, *args):
        pass

    def reply(self, status: int, value) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        path, _, query = self.path.partition("?")
        if path == "/disco/ctrl/load_config_table":
            return self.reply(200, [["node01", "2"], ["node02", "2"]])
        if path.startswith("/files/"):  # the web server inputs are downloaded from
            data = self.server.files.get(path[len("/files/"):])
            if data is None:
                return self.reply(404, "no such file")
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        if path.startswith("/ddfs/tag/"):
            tag = path[len("/ddfs/tag/"):]
            time.sleep(self.server.tag_read_delay)
            self.server.tag_reads.append("refused" if self.server.refuse_tag_reads else "ok")
            if self.server.refuse_tag_reads:
                return self.reply(500, "tag server busy")
            if tag not in self.server.tags:
                return self.reply(404, "Tag not found.")
            return self.reply(200, {"id": tag, "urls": self.server.tags[tag]})
        if path.startswith("/ddfs/new_blob/"):
            name = path[len("/ddfs/new_blob/"):]
            asked = dict(urllib.parse.parse_qsl(query))
            excluded = set(asked.get("exclude", "").split(",")) - {""}
            replicas = int(asked.get("replicas", self.server.replicas))
            port = self.server.server_port
            hosts = [(n, h) for n, h in self.server.hosts().items() if h not in excluded]
            if len(hosts) < replicas:
                return self.reply(403, "Not enough nodes for replicas.")
            return self.reply(200, [f"http://{h}:{port}/put/{n}/{name}$5f3-1"
                                    for n, h in hosts[:replicas]])
        return self.reply(404, "?")

    def read_body(self) -> tuple[bytes, list[int]]:
        """The body as mochiweb reads it: by Content-Length, or chunked (with the chunk
        sizes)."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers["Content-Length"])), []
        parts, sizes = [], []
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if not size:
                while self.rfile.readline() not in (b"\r\n", b""):  # trailers
                    pass
                return b"".join(parts), sizes
            parts.append(self.rfile.read(size))
            sizes.append(size)
            assert self.rfile.read(2) == b"\r\n"

    def do_PUT(self):  # noqa: N802
        _, _, node, name = self.path.split("/", 3)
        data, sizes = self.read_body()
        with self.server.lock:
            self.server.chunks.append(sizes)
        if node in self.server.dead:
            return self.reply(503, "node down")
        url = f"disco://{node}/ddfs/vol0/blob/{name}"
        with self.server.lock:
            self.server.blobs[url] = data
        return self.reply(201, url)

    def do_POST(self):  # noqa: N802
        tag = self.path.split("?")[0][len("/ddfs/tag/"):]
        urls = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.tags.setdefault(tag, []).extend(urls)
            self.server.tag_posts += 1
        return self.reply(200, urls)


class LocalTarget:
    """A target whose master is this machine: the pusher runs under `sh -c`."""

    def __init__(self) -> None:
        self.started = 0

    def exec(self, record, command, user="root", stdin=None):
        assert command == "command -v ddfs"
        return 0, "/usr/bin/ddfs"

    def exec_argv(self, record, command, user="root"):
        self.started += 1
        return ["sh", "-c", command]


RECORD = {"name": "c", "target": "local", "nodes": [state.node("node01"), state.node("node02")]}


SSH = """#!/bin/sh
# a stand-in for `ssh -o BatchMode=yes HOST COMMAND`: runs COMMAND here, logs HOST
echo "$3" >> "$(dirname "$0")/hosts"
exec sh -c "$4"
"""


@pytest.fixture
def ddfs(monkeypatch, tmp_path):
    server = FakeDDFS()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DISCO_PORT", str(server.server_port))
    monkeypatch.setenv("IMAGEBAKE_MASTER_URL", f"http://127.0.0.1:{server.server_port}")
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(SSH)
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    server.ssh_hosts = bin_dir / "hosts"
    target = LocalTarget()
    monkeypatch.setattr("imagebake.targets.get", lambda name: target)
    server.target = target
    yield server
    server.shutdown()
    server.server_close()


def _lines(n: int, seed: str = "") -> bytes:
    return b"".join(f"{seed}gram{i} x\t{1800 + i % 200}\t{i}\t1\t1\n".encode()
                    for i in range(n))


def test_inputs_are_stored_as_line_aligned_blobs_with_one_tag_update(ddfs, tmp_path):
    big = _lines(90_000)  # 2.5 MB: three blobs of at most 1 MiB
    (tmp_path / "a.tsv").write_bytes(big)
    (tmp_path / "b.tsv.gz").write_bytes(gzip.compress(TEXT * 3))
    (tmp_path / "c.tsv.bz2").write_bytes(bz2.compress(TEXT * 5))
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as archive:
        archive.writestr("m1.csv", b"zip one\t1\t1\t1\n")
        archive.writestr("dir/m2.csv", b"zip two\t1\t1\t1\n")
    sources = [str(tmp_path / n) for n in ("a.tsv", "b.tsv.gz", "c.tsv.bz2", "d.zip")]
    done = ddfs_load.load(RECORD, sources, "data:x", blob_mb=1)
    blobs = ddfs.tag_bytes("data:x")
    assert ddfs.tag_posts == 1
    assert b"".join(blobs) == big + TEXT * 3 + TEXT * 5 + b"zip one\t1\t1\t1\n" \
        + b"zip two\t1\t1\t1\n"
    assert all(b.endswith(b"\n") and len(b) <= 2**20 for b in blobs)
    assert done["new"] == len(blobs) == 3 and done["replicas"] == 2  # 2.5 MB in all
    assert done["bytes"] == len(b"".join(blobs))
    assert done["written"] == 2 * done["bytes"]
    for replicas in ddfs.tags["data:x"]:  # every replica holds the same bytes
        assert len({ddfs.blobs[u] for u in replicas}) == 1 and len(replicas) == 2
        name = replicas[0].rsplit("/", 1)[1].split("$")[0]
        assert name.endswith(hashlib.sha256(ddfs.blobs[replicas[0]]).hexdigest()[:32])


def test_blobs_are_put_in_chunks_of_at_most_one_mib(ddfs, tmp_path):
    """A DDFS storage node reads a Content-Length body 8 KiB at a time (one Erlang receive
    and one file write each) but a chunk in one piece: every PUT is chunked, 1 MiB a chunk."""
    big = _lines(200_000)  # 5.6 MB: two blobs of at most 4 MiB, each several chunks
    (tmp_path / "a.tsv").write_bytes(big)
    ddfs_load.load(RECORD, [str(tmp_path / "a.tsv")], "data:x", blob_mb=4)
    assert b"".join(ddfs.tag_bytes("data:x")) == big
    assert len(ddfs.chunks) == 2 * 2  # two blobs, two replicas each
    for sizes in ddfs.chunks:
        assert sizes and max(sizes) <= ddfs_push.CHUNK == 2**20
    assert sum(map(sum, ddfs.chunks)) == 2 * len(big)


def test_line_blobs_cut_at_line_ends_without_copying():
    """Blobs are memoryviews of the pieces as they came (no byte copied); each ends at the
    last line end before the size (else the first after it), whatever the pieces' bounds."""
    data = b"".join(b"%d\t%s\n" % (i, b"x" * (i % 37)) for i in range(3000))
    for step in (1, 7, 100, 4096, len(data)):
        pieces = [data[i:i + step] for i in range(0, len(data), step)]
        blobs = list(ddfs_push.line_blobs(iter(pieces), 1000))
        assert all(isinstance(v, memoryview) for blob in blobs for v in blob)
        joined = [b"".join(blob) for blob in blobs]
        assert b"".join(joined) == data
        at = 0
        for blob in joined[:-1]:  # each as long as it could be: the next line did not fit
            assert blob.endswith(b"\n") and len(blob) <= 1000
            assert len(blob) + data.index(b"\n", at + len(blob)) + 1 - at - len(blob) > 1000
            at += len(blob)
    blobs = list(ddfs_push.line_blobs(iter([b"a" * 1500 + b"\nb\n"]), 1000))
    assert [b"".join(b) for b in blobs] == [b"a" * 1500 + b"\n", b"b\n"]
    with pytest.raises(ddfs_push.Failed, match="a line longer than 4000 bytes"):
        list(ddfs_push.line_blobs(iter([b"a" * 3000, b"a" * 3000]), 1000))


def test_many_small_inputs_make_few_blobs_and_lines_never_merge(ddfs, tmp_path):
    sources = []
    for i in range(30):
        (tmp_path / f"s{i}.tsv").write_bytes(TEXT * 3 + b"no newline at the end")
        sources.append(str(tmp_path / f"s{i}.tsv"))
    done = ddfs_load.load(RECORD, sources, "data:x")
    assert done["new"] == 1 and done["inputs"] == 30
    [blob] = ddfs.tag_bytes("data:x")
    assert blob == (TEXT * 3 + b"no newline at the end\n") * 30


def test_loading_the_same_input_again_stores_nothing_new(ddfs, tmp_path):
    (tmp_path / "a.tsv").write_bytes(_lines(40_000))
    first = ddfs_load.load(RECORD, [str(tmp_path / "a.tsv")], "data:x", blob_mb=1)
    again = ddfs_load.load(RECORD, [str(tmp_path / "a.tsv")], "data:x", blob_mb=1)
    assert first["new"] == 2 and again["new"] == 0 and again["skipped"] == 2
    assert ddfs.tag_posts == 1 and len(ddfs.tags["data:x"]) == 2
    assert "2 already there" in ddfs_load.summary(again, "data:x")


def test_the_tag_read_beside_the_input_still_keeps_duplicates_out(ddfs, tmp_path):
    """The pusher reads the tag's blobs while the input streams in; a blob is only checked
    (and stored) once they are known, however slow the read."""
    (tmp_path / "a.tsv").write_bytes(_lines(40_000))
    ddfs_load.load(RECORD, [str(tmp_path / "a.tsv")], "data:x", blob_mb=1)
    ddfs.tag_read_delay = 1.5
    again = ddfs_load.load(RECORD, [str(tmp_path / "a.tsv")], "data:x", blob_mb=1)
    assert again["new"] == 0 and again["skipped"] == 2 and ddfs.tag_posts == 1


def test_a_tag_that_cannot_be_read_fails_the_load_before_any_blob(ddfs, tmp_path):
    (tmp_path / "a.tsv").write_bytes(_lines(40_000))
    ddfs.refuse_tag_reads = True
    with pytest.raises(ddfs_load.LoadFailed) as err:
        ddfs_load.load(RECORD, [str(tmp_path / "a.tsv")], "data:x", blob_mb=1)
    assert "reading tag data:x failed: HTTP 500" in str(err.value)
    assert "\n" not in str(err.value) and ddfs.tag_reads == ["refused"]
    assert not ddfs.blobs and ddfs.tag_posts == 0


def test_a_storage_node_failing_fails_the_load_and_leaves_the_tag(ddfs, tmp_path):
    (tmp_path / "a.tsv").write_bytes(_lines(40_000))
    ddfs.tags["data:x"] = [["disco://node01/ddfs/vol0/blob/old$1"]]
    ddfs.blobs["disco://node01/ddfs/vol0/blob/old$1"] = TEXT
    ddfs.dead.add("node02")
    with pytest.raises(ddfs_load.LoadFailed) as err:
        ddfs_load.load(RECORD, [str(tmp_path / "a.tsv")], "data:x", blob_mb=1)
    assert err.value.exit_code == 1 and "\n" not in str(err.value)
    assert "localhost" in str(err.value) and "tag data:x not changed" in str(err.value)
    assert ddfs.tag_posts == 0 and ddfs.tags["data:x"] == [["disco://node01/ddfs/vol0/blob/old$1"]]


def test_replicas_can_be_asked_for(ddfs, tmp_path):
    (tmp_path / "a.tsv").write_bytes(TEXT)
    done = ddfs_load.load(RECORD, [str(tmp_path / "a.tsv")], "data:x", replicas=1)
    assert done["replicas"] == 1 and [len(r) for r in ddfs.tags["data:x"]] == [1]
    assert done["written"] == len(TEXT)


def test_a_failed_store_is_retried_on_another_node(ddfs, tmp_path):
    """With one replica, a node that fails a PUT is excluded and the blob goes elsewhere."""
    ddfs.replicas = 1
    ddfs.dead.add("node01")
    (tmp_path / "a.tsv").write_bytes(TEXT)
    done = ddfs_load.load(RECORD, [str(tmp_path / "a.tsv")], "data:x")
    assert done["new"] == 1 and ddfs.tags["data:x"][0][0].startswith("disco://node02/")


def test_ctrl_c_midway_leaves_the_tag_and_no_pusher(ddfs, tmp_path, monkeypatch):
    (tmp_path / "a.tsv").write_bytes(_lines(100_000))
    reads = {"n": 0}
    real = ddfs_load.Capped.read

    def interrupted(self, size=-1):
        reads["n"] += 1
        if reads["n"] == 2:  # after the first block, before the input ends
            raise KeyboardInterrupt
        return real(self, size)

    monkeypatch.setattr(ddfs_load.Capped, "read", interrupted)
    procs = []
    popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: procs.append(popen(*a, **k))
                        or procs[-1])
    with pytest.raises(KeyboardInterrupt):
        ddfs_load.load(RECORD, [str(tmp_path / "a.tsv")], "data:x", blob_mb=1)
    assert ddfs.tag_posts == 0 and "data:x" not in ddfs.tags
    assert procs and all(p.poll() is not None for p in procs)


def test_the_pusher_never_tags_a_stream_that_ends_early(ddfs):
    """The stream cut after a whole input but before Z (a dead laptop): no tag change."""
    stream = ddfs_load.frame("F", b"a") + ddfs_load.frame("D", TEXT) + ddfs_load.frame("E")
    proc = subprocess.run(["sh", "-c", ddfs_load.pusher_command("data:x", 2**20, 2, False)],
                          input=stream, capture_output=True)
    assert proc.returncode == 1 and b"ended early" in proc.stdout
    assert ddfs.tag_posts == 0


def test_the_pusher_never_tags_when_the_stream_ends_while_the_slaves_download(ddfs):
    """After Z the laptop keeps the stream open until the pusher ends; its end (Ctrl-C)
    while the slaves download stops the load before the tag changes."""
    ddfs.files["a.tsv"] = TEXT * 1000
    item = {"url": f"http://127.0.0.1:{ddfs.server_port}/files/a.tsv", "name": "a_tsv",
            "shown": "a.tsv", "sha256": ""}
    stream = ddfs_load.frame("U", json.dumps(item).encode()) + ddfs_load.frame("Z", b"{}")
    proc = subprocess.run(["sh", "-c", ddfs_load.pusher_command("data:x", 2**20, 2, False)],
                          input=stream, capture_output=True)  # the stream ends after Z
    assert proc.returncode == 1 and b"ended before the load did" in proc.stdout, proc.stdout
    assert ddfs.tag_posts == 0


@pytest.mark.parametrize("suffix,writer", [
    (".gz", lambda p, d: p.write_bytes(gzip.compress(d))),
    (".bz2", lambda p, d: p.write_bytes(bz2.compress(d))),
])
def test_a_decompression_bomb_stops_at_the_cap_and_leaves_the_tag(ddfs, tmp_path, monkeypatch,
                                                                   suffix, writer):
    monkeypatch.setattr(ddfs_load, "MAX_UNPACKED", 3_000_000)
    path = tmp_path / f"bomb.csv{suffix}"
    writer(path, b"0" * 1000 + b"\n" * 4_000_000)
    with pytest.raises(ImagebakeError, match="unpacks to more than 3,000,000 bytes") as err:
        ddfs_load.load(RECORD, [str(path)], "data:x")
    assert "\n" not in str(err.value) and path.name in str(err.value)
    assert ddfs.tag_posts == 0


@pytest.mark.parametrize("tag", ["", "data grams", "data;rm", "x/y", "data.2grams", "a" * 512])
def test_bad_tags(tag):
    with pytest.raises(ImagebakeError, match="invalid DDFS tag"):
        ddfs_load.check_tag(tag)


def test_tag_prefix_is_dropped_and_ddfs_legal_names_pass():
    assert ddfs_load.check_tag("tag://data:2grams") == "data:2grams"
    assert ddfs_load.check_tag("user@x_y-z:1") == "user@x_y-z:1"


def test_blob_names_are_ddfs_legal():
    assert ddfs_load.blob_prefix("dir/googlebooks-eng.2gram.csv.zip") == "googlebooks-eng_2gram_csv"
    assert set(ddfs_load.blob_prefix("a b$c.gz")) <= ddfs_load.TAG_CHARS


@pytest.mark.parametrize("case", ["missing file", "bad tag", "ftp url", "bad sha256",
                                  "sha256 count", "checksum mismatch", "not a zip"])
def test_bad_input_is_one_line_exit_2_and_starts_nothing(ddfs, tmp_path, case):
    (tmp_path / "a.tsv").write_bytes(TEXT)
    sources, tag, sums = [str(tmp_path / "a.tsv")], "data:x", None
    if case == "missing file":
        sources.append(str(tmp_path / "absent.tsv"))
    elif case == "bad tag":
        tag = "data.x"
    elif case == "ftp url":
        sources.append("ftp://example.invalid/x")
    elif case == "bad sha256":
        sums = ["abc"]
    elif case == "sha256 count":
        sums = ["-", "-"]
    elif case == "checksum mismatch":
        sums = ["0" * 64]
    else:
        (tmp_path / "b.zip").write_bytes(TEXT)
        sources.append(str(tmp_path / "b.zip"))
    with pytest.raises(ImagebakeError) as err:
        ddfs_load.load(RECORD, sources, tag, sha256=sums)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    assert ddfs.target.started == 0 and ddfs.tag_posts == 0


def test_a_matching_sha256_loads(ddfs, tmp_path):
    (tmp_path / "a.tsv.gz").write_bytes(gzip.compress(TEXT))
    digest = hashlib.sha256((tmp_path / "a.tsv.gz").read_bytes()).hexdigest()
    assert ddfs_load.load(RECORD, [str(tmp_path / "a.tsv.gz")], "data:x",
                          sha256=[digest])["new"] == 1


# ---------------------------------------------------------------- issue 21 N2: zip members


@pytest.mark.parametrize("member", ["../secret", "../../secret", "a/../../secret",
                                    "/etc/passwd", "C:/secret", "..\\secret"])
def test_a_zip_member_outside_the_folder_is_refused(ddfs, tmp_path, member):
    """A member named ../x or /x once made the laptop upload that real file: refused in one
    line, exit 2, and nothing at all reaches the cluster."""
    (tmp_path / "secret").write_bytes(b"aws_secret_access_key = AKIA...\n")
    work = tmp_path / "in"
    work.mkdir()
    path = zip_of(work / "data.zip", [("ok.csv", TEXT), (member, TEXT)])
    with pytest.raises(ImagebakeError) as err:
        ddfs_load.load(RECORD, [str(path)], "data:x")
    assert "\n" not in str(err.value) and repr(member) in str(err.value)
    assert "outside" in str(err.value) and err.value.exit_code == 2
    assert ddfs.target.started == 0 and not ddfs.blobs


@pytest.mark.parametrize("member", ["ok.csv", "dir/sub/ok.csv", "./ok.csv", "a/../ok.csv",
                                    "dir/"])
def test_zip_members_inside_the_folder_pass(member):
    assert ddfs_load.check_member(member, "x.zip") == member


def test_a_symlink_member_is_refused(ddfs, tmp_path):
    path = zip_of(tmp_path / "data.zip", [("ok.csv", TEXT),
                                        ("link.csv", b"/home/u/.ssh/id_rsa", 0o120777)])
    with pytest.raises(ImagebakeError, match="symlink") as err:
        ddfs_load.load(RECORD, [str(path)], "data:x")
    assert "\n" not in str(err.value) and "link.csv" in str(err.value)
    assert ddfs.target.started == 0 and not ddfs.blobs


def test_a_zip_bomb_is_refused_before_anything_is_sent(ddfs, tmp_path, monkeypatch):
    monkeypatch.setattr(ddfs_load, "MAX_UNPACKED", 1_000_000)
    path = zip_of(tmp_path / "bomb.zip", [("a.csv", b"0" * 600_000), ("b.csv", b"0" * 600_000)])
    with pytest.raises(ImagebakeError, match="unpacks to more than 1,000,000 bytes") as err:
        ddfs_load.load(RECORD, [str(path)], "data:x")
    assert "\n" not in str(err.value) and "bomb.zip" in str(err.value)
    assert ddfs.target.started == 0 and not ddfs.blobs


# ---------------------------------------------------------------- inputs the slaves download
def _url(ddfs, name):
    return f"http://127.0.0.1:{ddfs.server_port}/files/{name}"


def test_url_inputs_are_downloaded_by_the_slaves_each_its_share(ddfs, tmp_path):
    ddfs.files["a.tsv.gz"] = gzip.compress(TEXT * 4)
    ddfs.files["b.tsv"] = TEXT * 2
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as archive:
        archive.writestr("m.csv", TEXT * 3)
    ddfs.files["c.zip"] = (tmp_path / "c.zip").read_bytes()
    (tmp_path / "local.tsv").write_bytes(TEXT)
    sums = ["-", hashlib.sha256(TEXT * 2).hexdigest(), "-", "-"]
    done = ddfs_load.load(RECORD, [_url(ddfs, "a.tsv.gz"), _url(ddfs, "b.tsv"),
                                   _url(ddfs, "c.zip"), str(tmp_path / "local.tsv")],
                          "data:x", sha256=sums)
    assert sorted(ddfs.tag_bytes("data:x")) == sorted([TEXT * 4, TEXT * 2, TEXT * 3, TEXT])
    assert ddfs.tag_posts == 1 and done["new"] == 4 and done["bytes"] == len(TEXT) * 10
    assert sorted(ddfs.ssh_hosts.read_text().split()) == ["node01", "node02"]  # one ssh each


@pytest.mark.parametrize("case,says", [
    ("missing", "download of {url} failed: HTTP 404"),
    ("checksum", "checksum mismatch for {url}: sha256 "),
    ("zip outside", "zip member '../../x' of {url} resolves outside its folder"),
])
def test_a_failed_download_is_one_line_naming_the_url_and_leaves_the_tag(ddfs, tmp_path,
                                                                        case, says):
    ddfs.tags["data:x"] = [["disco://node01/ddfs/vol0/blob/old$1"]]
    name, sums = "a.tsv", None
    if case == "checksum":
        ddfs.files[name], sums = TEXT, ["0" * 64]
    elif case == "zip outside":
        name = "evil.zip"
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            archive.writestr("../../x", TEXT)
        ddfs.files[name] = (tmp_path / name).read_bytes()
    with pytest.raises(ddfs_load.LoadFailed) as err:
        ddfs_load.load(RECORD, [_url(ddfs, name) + "?sig=SECRET"], "data:x", sha256=sums)
    assert err.value.exit_code == 1 and "\n" not in str(err.value)
    assert says.format(url=_url(ddfs, name)) in str(err.value)
    assert "SECRET" not in str(err.value)  # a presigned URL's signature is never printed
    assert ddfs.tag_posts == 0 and ddfs.tags["data:x"] == [["disco://node01/ddfs/vol0/blob/old$1"]]


@pytest.fixture
def s3(monkeypatch):
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket="grams")
        client.put_object(Bucket="grams", Key="dir/a.tsv.gz", Body=gzip.compress(TEXT))
        yield client


def test_an_s3_input_is_presigned_here_with_a_short_expiry(s3):
    from imagebake.disco import ddfs_url

    [source] = ddfs_load.check_sources(["s3://grams/dir/a.tsv.gz"])
    ddfs_url.prepare([source])
    item = ddfs_url.item(source, ddfs_load.blob_prefix)
    assert item["url"].startswith("https://grams.s3.amazonaws.com/dir/a.tsv.gz?")
    query = dict(urllib.parse.parse_qsl(item["url"].split("?", 1)[1]))
    expires = (int(query["X-Amz-Expires"]) if "X-Amz-Expires" in query
               else int(query["Expires"]) - time.time())
    assert 0 < expires <= ddfs_url.PRESIGN_SECONDS <= 900
    assert item["shown"] == "s3://grams/dir/a.tsv.gz" and item["name"] == "a_tsv"


@pytest.mark.parametrize("given,says", [("s3://grams/dir/absent.gz", "no such object"),
                                        ("s3://nobucket/a.gz", "no such bucket")])
def test_a_missing_s3_object_is_one_line_exit_2_before_anything(ddfs, s3, given, says):
    with pytest.raises(ImagebakeError) as err:
        ddfs_load.load(RECORD, [given], "data:x")
    assert err.value.exit_code == 2 and says in str(err.value) and given in str(err.value)
    assert ddfs.target.started == 0


@pytest.mark.parametrize("url", ["ftp://host/x", "gopher://h/x",
                                 "http:///nohost", "s3://bucketonly"])
def test_urls_that_are_not_http_or_s3_are_refused(url):
    with pytest.raises(ImagebakeError) as err:
        ddfs_load.check_sources([url])
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
