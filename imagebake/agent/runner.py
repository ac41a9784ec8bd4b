"""The one place the agent runs commands and changes ownership.

Tests swap it for a recording fake; a missing binary gives rc 127 instead of
an exception, so callers decide whether that is fatal.
"""

import os
import pwd
import subprocess

try:
    from shutil import which as _which
except ImportError:  # pragma: no cover
    _which = None

SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Result(object):
    def __init__(self, rc, out):
        self.rc = rc
        self.out = out

    @property
    def ok(self):
        return self.rc == 0

    def __repr__(self):
        return "Result(%d, %r)" % (self.rc, self.out[-200:])


class Runner(object):
    """Runs argv lists with a timeout; never raises for a missing binary."""

    def __init__(self, timeout=60):
        self.timeout = timeout
        self.notes = []

    def which(self, name):
        if os.path.isabs(name):
            return name if os.access(name, os.X_OK) else None
        path = os.environ.get("PATH", "") + ":" + SEARCH_PATH
        return _which(name, path=path)

    def run(self, argv, input_text=None, env=None):
        exe = self.which(argv[0])
        if exe is None:
            return Result(127, "%s: not found" % argv[0])
        try:
            proc = subprocess.Popen([exe] + list(argv[1:]), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env=env, close_fds=True)
        except OSError as exc:
            return Result(126, "%s: %s" % (argv[0], exc))
        try:
            out, _ = proc.communicate(
                input_text.encode("utf-8") if input_text is not None else None,
                timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return Result(124, "%s: timed out after %ss" % (argv[0], self.timeout))
        return Result(proc.returncode, out.decode("utf-8", "replace"))

    def spawn(self, argv):
        """Start a daemon and do not wait (used without an init system)."""
        exe = self.which(argv[0])
        if exe is None:
            return Result(127, "%s: not found" % argv[0])
        with open(os.devnull, "r+b") as null:
            subprocess.Popen([exe] + list(argv[1:]), stdin=null, stdout=null, stderr=null,
                             close_fds=True, start_new_session=True)
        return Result(0, "")

    def owner_ids(self, user, what=""):
        """(uid, gid) for chown-on-descriptor; None (noted) when not root or no such user."""
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            self.notes.append("chown %s skipped: no user %s" % (what, user))
            return None
        if os.geteuid() != 0:
            self.notes.append("chown %s skipped: not root" % what)
            return None
        return entry.pw_uid, entry.pw_gid

    def kill(self, pid, sig):
        os.kill(pid, sig)
