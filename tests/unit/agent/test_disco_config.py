"""disco_config.py: Disco's hosts table, settings and replicas follow the members; ports
avoid the join port."""

import json
import os

import pytest

from imagebake.agent import disco_config as D
from imagebake.agent.spec import make_spec


def nodes(*names, **kw):
    return [{"hostname": n, "cores": kw.get("cores", 4)} for n in names]


def test_rows_use_strings_and_leave_out_a_master_without_workers():
    spec = make_spec("c", "master", expected_nodes=2)
    rows = D.host_rows(spec, "master", 8, nodes("node02", "node01"))
    assert rows == [["node01", "4"], ["node02", "4"]]
    text = D.render_config(rows)
    assert json.loads(text) == {"hosts": rows, "blacklist": [], "gc_blacklist": []}


def test_master_listed_only_with_master_workers_and_fixed_workers_win():
    spec = make_spec("c", "master", master_workers=2, workers=6)
    rows = D.host_rows(spec, "master", 8, nodes("node01", cores=16))
    assert rows == [["master", "2"], ["node01", "6"]]


@pytest.mark.parametrize("expected,joined,master_workers,replicas", [
    (0, 0, 0, 1), (1, 0, 0, 1), (2, 0, 0, 2), (3, 0, 0, 3), (10, 0, 0, 3),
    (0, 2, 0, 2), (1, 0, 1, 2), (2, 0, 3, 3)])
def test_replicas_follow_the_node_count(expected, joined, master_workers, replicas):
    spec = make_spec("c", "master", expected_nodes=expected, master_workers=master_workers)
    text = D.render_settings(spec, "master", joined)
    for key in ("DDFS_TAG_MIN_REPLICAS", "DDFS_TAG_REPLICAS", "DDFS_BLOB_REPLICAS"):
        assert f"{key} = {replicas}" in text


def test_settings_keep_installed_lines_and_narrow_erlang_ports():
    spec = make_spec("c", "master", erlang_ports=(31000, 31010), disco_port=9000)
    installed = ('DISCO_HOME = "/opt/disco"\nDISCO_PORT = 8989\nDDFS_TAG_REPLICAS     = 3\n'
                 '# a comment\n')
    text = D.render_settings(spec, "master", 0, installed)
    assert 'DISCO_HOME = "/opt/disco"' in text and "# a comment" in text
    assert "DISCO_PORT = 8989" not in text and "DISCO_PORT = 9000" in text
    assert "DDFS_TAG_REPLICAS     = 3" not in text
    assert ('DISCO_ERLANG = "erl -kernel inet_dist_listen_min 31000 inet_dist_listen_max 31010"'
            in text)
    assert D.render_settings(spec, "master", 0, text) == text
    namespace = {}
    exec(compile(text, "settings.py", "exec"), namespace)  # valid Python assignments
    assert namespace["DISCO_MASTER_HOST"] == "master" and namespace["DISCO_USER"] == "disco"


def test_ddfs_put_port_avoids_the_join_port():
    assert D.ddfs_put_port(make_spec("c", "master")) == 8991  # join_port 8990 taken
    assert D.ddfs_put_port(make_spec("c", "master", join_port=8995)) == 8990


def test_config_path_uses_the_disco_port():
    assert D.config_path(make_spec("c", "master", disco_port=9000)) == \
        "/usr/var/disco/disco_9000.config"


def test_disco_absent_and_present(agent_ctx):
    ctx = agent_ctx()
    assert D.disco_installed(ctx) is None
    os.makedirs(ctx.path("/usr/local/bin"))
    exe = ctx.path("/usr/local/bin/disco")
    with open(exe, "w") as handle:
        handle.write("#!/bin/sh\n")
    os.chmod(exe, 0o755)
    assert D.disco_installed(ctx) == "/usr/local/bin/disco"


def test_disco_s_reply_to_save_config_table_is_read_only_up_to_a_cap():
    """Disco's answer is read with a limit: an endless or huge reply is refused with a
    reason, never read whole (issue 21 N3)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Huge(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(256):  # 16 MiB, far over the cap
                    self.wfile.write(chunk)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Huge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ok, text = D.save_config_table([["node01", "1"]], server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert not ok and "over" in text and len(text) < 300
