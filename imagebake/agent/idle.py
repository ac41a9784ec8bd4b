"""Idle stop: the master stops the whole cluster once Disco has run no job for a while.

The spec's idle_stop (seconds) arms it. The master agent asks Disco's own job list
on localhost, GET /disco/ctrl/joblist (Disco 0.5.4 master/src/disco_web.erl:
[[start, status, name], ...], newest first; start = the job's start in unix
seconds, status "active", "ready" or "dead"), and keeps the time of the last
job activity:

- a job listed "active" is activity now;
- a job seen active at the previous poll and no longer active ended in between:
  activity now;
- a job that started since (start later than the last activity) is activity at
  its start, even if it also ended between two polls.

Disco not answering is no evidence of activity (a dead Disco runs no job): the
clock runs on from the last activity seen. Without Disco in the image there is
never a job: the clock runs from the agent's start.

When now >= last activity + idle_stop the master stops Disco (no job can start
any more), puts a signed stop order in its heartbeat replies, waits until every
node has been told (or STOP_GRACE seconds: a node heartbeats every 30 s), then
powers itself off. The TTL is independent of all this: if this watcher dies the
TTL still holds.
"""

import json

JOBLIST_PATH = "/disco/ctrl/joblist"
STOP_GRACE = 45  # seconds the master waits for nodes to fetch the stop order


def fetch_joblist(port, host="127.0.0.1", timeout=5):
    """Disco's job list as [(start, status, name)], or None when Disco does not answer."""
    from urllib.request import urlopen
    try:
        response = urlopen("http://%s:%d%s" % (host, port, JOBLIST_PATH), timeout=timeout)
        try:
            data = json.loads(response.read(4 * 1024 * 1024).decode("utf-8"))
        finally:
            response.close()
    except (OSError, ValueError):
        return None
    return parse_joblist(data)


def parse_joblist(data):
    """[(start, status, name)] of the entries that have that shape, or None if DATA is
    not a list."""
    if not isinstance(data, list):
        return None
    jobs = []
    for entry in data:
        if (isinstance(entry, list) and len(entry) == 3
                and isinstance(entry[0], (int, float)) and not isinstance(entry[0], bool)
                and isinstance(entry[1], str) and isinstance(entry[2], str)):
            jobs.append((int(entry[0]), entry[1], entry[2]))
    return jobs


class IdleWatch(object):
    """The idle clock. observe(now, jobs) after each poll; due(now) says stop."""

    def __init__(self, idle_stop, started):
        self.idle_stop = idle_stop
        self.started = started
        self.last_activity = started
        self.last_job = None  # (name, start, status) of the newest job seen
        self.active = set()
        self.answering = None  # None: not asked yet (or no Disco), True/False: last poll

    def observe(self, now, jobs):
        """Fold one poll in: JOBS is the job list, or None when Disco did not answer."""
        if jobs is None:
            self.answering = False
            return
        self.answering = True
        active = set(name for _, status, name in jobs if status == "active")
        if active or (self.active - active):
            self.last_activity = now
        for start, status, name in jobs:
            if self.last_activity < start:
                self.last_activity = min(start, now)
            if self.last_job is None or start >= self.last_job[1]:
                self.last_job = (name, start, status)
        self.active = active

    def stop_at(self):
        return self.last_activity + self.idle_stop

    def due(self, now):
        return now >= self.stop_at()

    def view(self, now, disco_present=True):
        """The idle-stop part of the master's status (JSON-able)."""
        if not disco_present:
            disco = "absent: no job can run, idle since the agent started"
        elif self.answering is None:
            disco = "not asked yet"
        else:
            disco = "answering" if self.answering else "not answering (counts as idle)"
        return {"idle_stop": self.idle_stop, "last_activity": self.last_activity,
                "idle_for": max(0, now - self.last_activity), "stop_at": self.stop_at(),
                "running_jobs": sorted(self.active),
                "last_job": (None if self.last_job is None else
                             {"name": self.last_job[0], "start": self.last_job[1],
                              "status": self.last_job[2]}),
                "disco": disco}
