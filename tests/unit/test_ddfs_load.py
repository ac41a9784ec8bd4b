"""Input handling of `invoke ddfs-load`: paths, URLs, compressed files, tags."""

from __future__ import annotations

import bz2
import gzip
import http.server
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


@pytest.mark.parametrize("tag", ["", "data grams", "data;rm", "x/y"])
def test_bad_tags(tag):
    with pytest.raises(ImagebakeError, match="invalid DDFS tag"):
        ddfs_load.check_tag(tag)
