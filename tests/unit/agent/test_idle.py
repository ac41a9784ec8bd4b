"""idle.py: the idle clock (a fake clock, a fake Disco job list): due exactly idle_stop
after the last job."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from imagebake.agent import idle

from .helpers import free_port

T0 = 1700000000


def test_no_job_is_due_exactly_idle_stop_after_the_start():
    watch = idle.IdleWatch(600, T0)
    for now in range(T0, T0 + 600, 15):
        watch.observe(now, [])
        assert not watch.due(now)
    assert watch.due(T0 + 600) and watch.stop_at() == T0 + 600


def test_a_running_job_holds_the_stop_and_its_end_restarts_the_clock():
    watch = idle.IdleWatch(600, T0)
    watch.observe(T0 + 100, [[T0 + 90, "active", "job@1"]])
    for now in range(T0 + 100, T0 + 3000, 15):  # a job running far longer than idle_stop
        watch.observe(now, [(T0 + 90, "active", "job@1")])
        assert not watch.due(now)
    watch.observe(T0 + 3005, [(T0 + 90, "ready", "job@1")])  # ended since the last poll
    assert watch.last_activity == T0 + 3005
    assert not watch.due(T0 + 3005 + 599) and watch.due(T0 + 3005 + 600)
    view = watch.view(T0 + 3100)
    assert view["last_job"] == {"name": "job@1", "start": T0 + 90, "status": "ready"}
    assert view["stop_at"] == T0 + 3605 and view["idle_for"] == 95


def test_a_job_started_and_finished_between_polls_counts_from_its_start():
    watch = idle.IdleWatch(600, T0)
    watch.observe(T0 + 500, [(T0 + 450, "dead", "quick@1"), (T0 - 5000, "ready", "old@1")])
    assert watch.last_activity == T0 + 450
    assert watch.stop_at() == T0 + 1050


def test_old_jobs_and_a_silent_disco_do_not_hold_the_stop():
    watch = idle.IdleWatch(60, T0)
    watch.observe(T0 + 10, [(T0 - 100, "ready", "before-boot@1")])
    watch.observe(T0 + 30, None)  # Disco not answering: no evidence of activity
    assert watch.answering is False and watch.due(T0 + 60)
    assert "not answering" in watch.view(T0 + 60)["disco"]


def test_joblist_parsing_and_fetch_against_a_fake_disco():
    assert idle.parse_joblist("nope") is None
    assert idle.parse_joblist([[1, "active", "a"], ["x", "active", "b"], [2, "ready"]]) == [
        (1, "active", "a")]
    jobs = [[T0 + 5, "active", "wc@57"], [T0, "ready", "wc@56"]]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            body = json.dumps(jobs).encode() if self.path == idle.JOBLIST_PATH else b""
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert idle.fetch_joblist(server.server_address[1]) == [
            (T0 + 5, "active", "wc@57"), (T0, "ready", "wc@56")]
    finally:
        server.shutdown()
        server.server_close()
    assert idle.fetch_joblist(free_port(), timeout=1) is None
