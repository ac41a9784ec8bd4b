"""Everything the agent touches from outside: file root, commands, clock, logging.

Tests build a Context with a temporary root, a fake runner and a fake clock, so
the whole agent runs unprivileged on the host.
"""

import logging
import os
import pwd
import sys
import time

from .runner import Runner

DISCO_USER = "disco"
LOG = logging.getLogger("imagebake_agent")


def setup_logging(level=logging.INFO):
    if not LOG.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("imagebake-agent: %(message)s"))
        LOG.addHandler(handler)
    LOG.setLevel(level)
    LOG.propagate = False


class Context(object):
    """root: path prefix for every file ('/' on a machine, a temp dir in tests)."""

    def __init__(self, root="/", runner=None, clock=None, power_off=None,
                 imds_url="http://169.254.169.254", hostname=None, sleep=None,
                 allow_loopback=False):
        self.root = os.path.abspath(root)
        self.runner = runner if runner is not None else Runner()
        self.clock = clock if clock is not None else time.time
        self.sleep = sleep if sleep is not None else time.sleep
        self.power_off = power_off  # None: ttl.default_power_off
        self.imds_url = imds_url  # None disables the EC2 metadata lookup
        self._hostname = hostname
        # Tests run whole clusters on 127.0.0.0/8; on a machine loopback is never
        # accepted as the master's or a member's address.
        self.allow_loopback = allow_loopback
        self.log = LOG

    def path(self, path):
        """Map an absolute machine path into the root."""
        if self.root == "/":
            return path
        return os.path.join(self.root, path.lstrip("/"))

    def now(self):
        return int(self.clock())

    def machine_hostname(self):
        if self._hostname:
            return self._hostname
        import socket
        return socket.gethostname().split(".")[0]

    @property
    def disco_user(self):
        return DISCO_USER

    def disco_owner(self, what=""):
        """(uid, gid) of the disco user for fchown, or None (noted) when not possible."""
        return self.runner.owner_ids(self.disco_user, what)

    def disco_home(self):
        """~disco inside the root (pwd entry when the user exists, else /home/disco)."""
        try:
            home = pwd.getpwnam(self.disco_user).pw_dir
        except KeyError:
            home = "/home/" + self.disco_user
        return self.path(home)

    def disco_path(self, *parts):
        return os.path.join(self.disco_home(), *parts)
