"""Input handling of `invoke ddfs-load`: paths, URLs, compressed files, tags."""

from __future__ import annotations

import bz2
import gzip
import http.server
import tempfile
import threading
import zipfile

import pytest

from imagebake.disco import ddfs_load
from imagebake.errors import ImagebakeError

TEXT = b"of the\t1999\t12\t3\t1\n"


@pytest.mark.parametrize("suffix,writer", [
    (".gz", lambda p: p.write_bytes(gzip.compress(TEXT))),
    (".bz2", lambda p: p.write_bytes(bz2.compress(TEXT))),
    (".tsv", lambda p: p.write_bytes(TEXT)),
])
def test_compressed_inputs_are_unpacked(tmp_path, suffix, writer):
    path = tmp_path / f"grams{suffix}"
    writer(path)
    out = tmp_path / "out"
    out.mkdir()
    [plain] = ddfs_load._plain(path, out)
    assert plain.read_bytes() == TEXT


def test_zip_with_several_members(tmp_path):
    path = tmp_path / "googlebooks-eng-all-2gram-20090715-0.csv.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", TEXT)
        archive.writestr("b.csv", TEXT * 2)
    out = tmp_path / "out"
    out.mkdir()
    assert sorted(p.read_bytes() for p in ddfs_load._plain(path, out)) == [TEXT, TEXT * 2]


def test_url_is_downloaded(tmp_path):
    (tmp_path / "grams.tsv").write_bytes(TEXT)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dest = tmp_path / "dl"
        dest.mkdir()
        url = f"http://127.0.0.1:{server.server_port}/grams.tsv"
        assert ddfs_load._fetch(url, dest).read_bytes() == TEXT
        with pytest.raises(ImagebakeError, match="cannot download"):
            ddfs_load._fetch(url + ".missing", dest)
    finally:
        server.shutdown()


@pytest.mark.parametrize("source", ["/nonexistent/file.gz", "ftp://example.invalid/x"])
def test_bad_sources_are_one_line(tmp_path, source):
    with pytest.raises(ImagebakeError) as err:
        ddfs_load._fetch(source, tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("tag", ["", "data grams", "data;rm", "x/y", "data.2grams", "a" * 512])
def test_bad_tags(tag):
    with pytest.raises(ImagebakeError, match="invalid DDFS tag"):
        ddfs_load.check_tag(tag)


def test_tag_prefix_is_dropped_and_ddfs_legal_names_pass():
    assert ddfs_load.check_tag("tag://data:2grams") == "data:2grams"
    assert ddfs_load.check_tag("user@x_y-z:1") == "user@x_y-z:1"


class FakeMaster:
    """A target whose exec records the commands and fails the ones matching FAIL."""

    def __init__(self, fail: str = "", has_ddfs: bool = True) -> None:
        self.calls: list[str] = []
        self.uploaded: list[bytes] = []
        self.fail, self.has_ddfs = fail, has_ddfs

    def exec(self, record, command, user="root", stdin=None):
        self.calls.append(command)
        if command == "command -v ddfs":
            return (0, "/usr/bin/ddfs") if self.has_ddfs else (1, "")
        if command.startswith("mktemp"):
            return 0, "/tmp/imagebake-ddfs.abc123\n"
        if stdin is not None:
            self.uploaded.append(stdin.read())
        if self.fail and self.fail in command:
            return 1, "Traceback ...\nCommError: not enough nodes\n"
        return 0, ""


@pytest.fixture
def master(monkeypatch):
    fake = FakeMaster()
    monkeypatch.setattr("imagebake.targets.get", lambda name: fake)
    return fake


def _files(tmp_path, n=3):
    paths = []
    for i in range(n):
        (tmp_path / f"f{i}.tsv").write_bytes(TEXT)
        paths.append(str(tmp_path / f"f{i}.tsv"))
    return paths


def test_all_files_go_in_one_ddfs_chunk_and_the_copy_is_removed(master, tmp_path):
    assert ddfs_load.load({"name": "c", "target": "fake"}, _files(tmp_path), "data:x") == 3
    chunks = [c for c in master.calls if c.startswith("ddfs chunk")]
    assert len(chunks) == 1 and chunks[0].count("/tmp/imagebake-ddfs.abc123/") == 3
    assert master.calls[-1] == "rm -rf /tmp/imagebake-ddfs.abc123"


def test_a_failed_chunk_is_one_line_and_the_copy_is_removed(master, tmp_path):
    master.fail = "ddfs chunk"
    with pytest.raises(ImagebakeError) as err:
        ddfs_load.load({"name": "c", "target": "fake"}, _files(tmp_path), "data:x")
    assert "\n" not in str(err.value) and "not enough nodes" in str(err.value)
    assert "was not changed" in str(err.value)
    assert master.calls[-1] == "rm -rf /tmp/imagebake-ddfs.abc123"


@pytest.mark.parametrize("case", ["missing file", "bad tag", "no disco"])
def test_bad_input_stores_nothing(master, tmp_path, case):
    sources, tag = _files(tmp_path), "data:x"
    if case == "missing file":
        sources.append(str(tmp_path / "absent.tsv"))
    elif case == "bad tag":
        tag = "data.x"
    else:
        master.has_ddfs = False
    with pytest.raises(ImagebakeError) as err:
        ddfs_load.load({"name": "c", "target": "fake"}, sources, tag)
    assert "\n" not in str(err.value)
    assert not [c for c in master.calls if c != "command -v ddfs"]  # nothing copied or stored


# ---------------------------------------------------------------- issue 21 N2: zip members
def _zip(path, members):
    """A zip with MEMBERS: (name, bytes) pairs, or (name, bytes, unix mode) for a symlink."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, *mode in members:
            info = zipfile.ZipInfo(name)
            if mode:
                info.create_system = 3
                info.external_attr = mode[0] << 16
            archive.writestr(info, data)
    return path


@pytest.mark.parametrize("member", ["../secret", "../../secret", "a/../../secret",
                                    "/etc/passwd"])
def test_a_zip_member_outside_the_folder_is_refused(master, tmp_path, monkeypatch, member):
    """A member named ../x or /x would make the laptop upload that real file: refused in one
    line, and nothing at all reaches the master."""
    (tmp_path / "t").mkdir()  # the laptop's temporary folders go here
    for where in (tmp_path, tmp_path / "t"):  # where ../secret and ../../secret point
        (where / "secret").write_bytes(b"aws_secret_access_key = AKIA...\n")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "t"))
    work = tmp_path / "in"
    work.mkdir()
    path = _zip(work / "data.zip", [("ok.csv", TEXT), (member, TEXT)])
    with pytest.raises(ImagebakeError) as err:
        ddfs_load.load({"name": "c", "target": "fake"}, [str(path)], "data:x")
    assert "\n" not in str(err.value) and member in str(err.value)
    assert "outside" in str(err.value)
    assert not [c for c in master.calls if c != "command -v ddfs"] and not master.uploaded


def test_a_symlink_member_is_refused(master, tmp_path):
    path = _zip(tmp_path / "data.zip", [("ok.csv", TEXT),
                                        ("link.csv", b"/home/u/.ssh/id_rsa", 0o120777)])
    with pytest.raises(ImagebakeError, match="symlink") as err:
        ddfs_load.load({"name": "c", "target": "fake"}, [str(path)], "data:x")
    assert "\n" not in str(err.value) and "link.csv" in str(err.value)
    assert not [c for c in master.calls if c != "command -v ddfs"]


@pytest.mark.parametrize("kind", ["zip", "gz"])
def test_unpacked_bytes_are_capped(master, tmp_path, monkeypatch, kind):
    """A zip bomb (or a gzip one) stops at the cap with a clear line, before the master
    is given anything."""
    monkeypatch.setattr(ddfs_load, "MAX_UNPACKED", 1_000_000, raising=False)
    data = b"0" * 2_000_000
    if kind == "zip":
        path = _zip(tmp_path / "bomb.zip", [("a.csv", data)])
    else:
        path = tmp_path / "bomb.csv.gz"
        path.write_bytes(gzip.compress(data))
    with pytest.raises(ImagebakeError, match="unpacks to more than 1,000,000 bytes") as err:
        ddfs_load.load({"name": "c", "target": "fake"}, [str(path)], "data:x")
    assert "\n" not in str(err.value) and path.name in str(err.value)
    assert not [c for c in master.calls if c != "command -v ddfs"]
