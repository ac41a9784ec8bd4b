"""Phase bookkeeping in /var/lib/imagebake/state.json (kubeadm-style phases)."""

import threading

from .fsutil import dump_json, load_json, write_atomic

STATE_DIR = "/var/lib/imagebake"
STATE_FILE = STATE_DIR + "/state.json"


class PhaseFailed(RuntimeError):
    """A phase could not complete; the message is one line."""


class State(object):
    def __init__(self, ctx):
        self.ctx = ctx
        self.path = ctx.path(STATE_FILE)
        self.data = load_json(self.path, {}) or {}
        self.data.setdefault("phases", {})
        self._lock = threading.Lock()

    def set(self, key, value):
        with self._lock:
            self.data[key] = value
            self._save()

    def get(self, key, default=None):
        return self.data.get(key, default)

    def record(self, phase, status, detail=""):
        with self._lock:
            self.data["phases"][phase] = {"status": status, "detail": detail,
                                          "ts": self.ctx.now()}
            self._save()

    def _save(self):
        write_atomic(self.path, dump_json(self.data), mode=0o600, dir_mode=0o700)

    def run_phase(self, name, func):
        """Run func(); log and record 'phase NAME: ok|failed: reason'. Returns func's value."""
        log = self.ctx.log
        try:
            detail = func()
        except PhaseFailed as exc:
            reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - a phase never crashes the agent silently
            reason = "%s: %s" % (type(exc).__name__, exc)
        else:
            text = detail if isinstance(detail, str) else ""
            log.info("phase %s: ok%s", name, (" (%s)" % text) if text else "")
            self.record(name, "ok", text)
            return detail
        log.error("phase %s: failed: %s", name, reason)
        self.record(name, "failed", reason)
        raise PhaseFailed("phase %s failed: %s" % (name, reason))

