"""Spot interruption notices from EC2's metadata service, polled by every machine's agent.

EC2 warns a spot instance two minutes before it takes it back
(meta-data/spot/instance-action: {"action": "terminate", "time": "..."}) and may warn
earlier that it is at elevated risk (meta-data/events/recommendations/rebalance:
{"noticeTime": "..."}); both answer 404 until there is something to say. Watch polls
both every INTERVAL seconds with the IMDSv2 token (kept for its life, fetched again after
a 401), each request bounded by TIMEOUT; when the service cannot be reached it waits
UNREACHABLE_INTERVAL before the next try. A notice is reported once per kind and
content: the same answer polled again is not new.
"""

import json
import socket
from urllib.error import HTTPError, URLError
from urllib.request import Request

from . import imds

INSTANCE_ACTION = "instance-action"
REBALANCE = "rebalance"
PATHS = ((INSTANCE_ACTION, "/latest/meta-data/spot/instance-action"),
         (REBALANCE, "/latest/meta-data/events/recommendations/rebalance"))
KINDS = tuple(kind for kind, _ in PATHS)
INTERVAL = 5.0               # EC2's notice comes 120 s ahead: a poll is 2 local requests
UNREACHABLE_INTERVAL = 60.0  # no metadata service answering: try again later
TIMEOUT = 1.0                # each request (the service is on the link)
TOKEN_REUSE = 21600 - 300    # a token lives imds.TOKEN_TTL s; fetch a new one before
MAX_TEXT = 200               # a notice's action/time: short printable ASCII


def _text(value):
    if not isinstance(value, str):
        return ""
    value = value.strip()[:MAX_TEXT]
    return value if all(32 <= ord(c) < 127 for c in value) else ""


def parse(kind, body):
    """The notice a metadata answer carries ({kind, action, time}), or None."""
    try:
        data = json.loads(body.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    if kind == INSTANCE_ACTION:
        action, when = _text(data.get("action")), _text(data.get("time"))
    else:
        action, when = "rebalance", _text(data.get("noticeTime"))
    if not action:
        return None
    return {"kind": kind, "action": action, "time": when}


class Unreachable(Exception):
    pass


class Watch(object):
    """Polls the metadata service for this machine's notices (see the module text)."""

    def __init__(self, ctx, base, interval=INTERVAL, timeout=TIMEOUT):
        self.ctx = ctx
        self.base = base.rstrip("/")
        self.interval = interval
        self.timeout = timeout
        self.token = None
        self.token_at = None
        self.next_at = None
        self.seen = {}  # kind -> the last notice reported
        self.polls = 0

    def _token(self, now):
        if self.token is None or self.token_at is None or now - self.token_at > TOKEN_REUSE:
            try:
                self.token = imds.get_token(self.base, self.timeout)
            except imds.NoIMDS as exc:
                raise Unreachable(str(exc)) from None
            self.token_at = now
        return self.token

    def _get(self, path, now):
        """The answer's bytes, or None (404: nothing to say)."""
        for attempt in (1, 2):
            token = self._token(now)
            headers = {imds.TOKEN_HEADER: token} if token else {}
            try:
                return imds._open(Request(self.base + path, headers=headers), self.timeout)
            except HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code == 401 and attempt == 1:  # expired or revoked: a new token
                    self.token = None
                    continue
                raise Unreachable("%s answered HTTP %d" % (path, exc.code)) from None
            except (URLError, OSError, socket.timeout) as exc:
                raise Unreachable("%s: %s" % (path, getattr(exc, "reason", exc))) from None
            except imds.NoIMDS as exc:  # an answer over imds.MAX_ANSWER
                raise Unreachable("%s: %s" % (path, exc)) from None
        return None  # pragma: no cover

    def due(self, now):
        return self.next_at is None or now >= self.next_at

    def poll(self, now=None):
        """New notices since the last poll ([] when not due yet, or nothing new)."""
        now = self.ctx.now() if now is None else now
        if not self.due(now):
            return []
        self.polls += 1
        fresh = []
        try:
            for kind, path in PATHS:
                body = self._get(path, now)
                notice = parse(kind, body) if body is not None else None
                if body is not None and notice is None:
                    self.ctx.log.warning("metadata %s: not a notice: %r", path, body[:100])
                if notice is not None and self.seen.get(kind) != notice:
                    self.seen[kind] = notice
                    fresh.append(notice)
        except Unreachable as exc:
            self.next_at = now + UNREACHABLE_INTERVAL
            self.ctx.log.info("spot notices: %s; next try in %d s", exc, UNREACHABLE_INTERVAL)
            return fresh
        self.next_at = now + self.interval
        return fresh


def describe(notice):
    """One line: 'instance-action terminate at 2026-...' / 'rebalance recommendation at ...'."""
    if notice["kind"] == REBALANCE:
        return "rebalance recommendation%s" % (" at %s" % notice["time"] if notice["time"]
                                               else "")
    return "instance-action %s%s" % (notice["action"],
                                     " at %s" % notice["time"] if notice["time"] else "")
