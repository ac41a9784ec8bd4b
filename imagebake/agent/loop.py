"""After the boot: the master serves joins, a node heartbeats every 30 s; both watch
the TTL, the master also the idle stop, until this machine powers off or is stopped.

Agent is the whole agent: the boot (boot.py) plus this loop. The master's own state
(its registry, Disco, the stop order) stays in master.Master: the loop asks it and
tells it, through its methods.
"""

import signal
import threading

from . import idle, node, notice, source, ttl
from .boot import Boot
from .protocol import ProtocolError

CONFIRM_ATTEMPTS = 5  # trusted joins tried at the end of a node's boot (then: heartbeat)


class Agent(Boot):
    def __init__(self, ctx, spec_path=None, bind_address="0.0.0.0", addresses=None):
        Boot.__init__(self, ctx, spec_path, bind_address, addresses)
        self.joblist = idle.fetch_joblist  # (port) -> Disco's job list or None; tests swap it
        self._lifetime_saved = None
        self.notices = None  # notice.Watch, made when the spec came from IMDS
        self.unsent = []     # a node's notices the master has not acknowledged yet

    def setup(self):
        self.exit_on_sigterm()
        if not Boot.setup(self):
            return False
        if self.spec["role"] == "node" and not self.stopped:
            self.confirm()
        return True

    def confirm(self, attempts=CONFIRM_ATTEMPTS):
        """Node, its boot done (the master's keys and resolver written): one trusted join,
        so the master puts this node in Disco's hosts table now, not at the first
        heartbeat 30 s later (Disco starts the node's Erlang over ssh at once, and an ssh
        that came before authorized_keys costs slave:start's 32 s timeout and node_mon's
        restart delay). A few tries with backoff; the heartbeat covers the rest."""
        for attempt, delay in zip(range(1, attempts + 1), node.backoff_delays()):
            if self.heartbeat():
                return True
            if attempt < attempts:
                self.ctx.sleep(delay)
        self.ctx.log.warning("the master did not take this node's trusted join: it enters "
                             "Disco's table at the next heartbeat (%d s)", node.HEARTBEAT)
        return False

    def forever(self, tick=5.0, max_ticks=None):
        """Master: serve joins; node: heartbeat re-join every 30 s. Both watch the TTL."""
        ticks = 0
        last_join = self.ctx.now()
        while max_ticks is None or ticks < max_ticks:
            ticks += 1
            if self.stopped or ttl.enforce(self.ctx, self.spec):
                return
            self.watch_notices()
            if self.spec["role"] == "master":
                if self.watch_idle():
                    return
                self.save_lifetime()
            self.ctx.sleep(tick)
            if self.spec["role"] == "node" and self.ctx.now() - last_join >= node.HEARTBEAT:
                last_join = self.ctx.now()
                self.heartbeat()

    # -- spot interruption notices (notice.py) ----------------------------------------

    def notice_watch(self):
        """The IMDS poller, where the spec came from EC2's metadata service (EC2, and the
        qemu target's emulated one); None elsewhere (docker: no metadata service)."""
        if self.notices is None and self.ctx.imds_url and source.from_metadata(self.origin):
            self.notices = notice.Watch(self.ctx, self.ctx.imds_url)
        return self.notices

    def watch_notices(self):
        """One poll when due: a new notice is logged; the master records its own (status
        says it will go), a node sends it signed to the master, again at the next tick
        until the master answered. The master also forgets interrupted nodes gone."""
        watch = self.notice_watch()
        for seen in (watch.poll() if watch is not None else []):
            self.ctx.log.warning("spot notice for this machine: %s", notice.describe(seen))
            if self.master is not None:
                self.master.own_notice(seen)
            else:
                self.unsent.append(seen)
        while self.unsent and self.spec["role"] == "node":
            try:
                outcome = node.send_notice(self.ctx, self.spec, self.identity(), self.unsent[0])
            except (node.JoinError, ProtocolError, ValueError) as exc:
                self.ctx.log.info("spot notice not delivered yet: %s", exc)
                break
            self.ctx.log.info("spot notice delivered: master: %s", outcome)
            self.unsent.pop(0)
        if self.master is not None:
            self.master.forget_gone(self.ctx.now())

    # -- the master: idle stop, the lifetime view --------------------------------------

    def watch_idle(self):
        """Master: one step of the idle stop (see idle.py); True once it powered off.

        Decided: stop Disco (no job starts from here on), tell the nodes through the
        signed heartbeat reply, power off once all were told or after STOP_GRACE."""
        master, ctx = self.master, self.ctx
        if master is None or not self.spec.get("idle_stop"):
            return False
        now = ctx.now()
        stopping, since = master.stop_order()
        if stopping is None:
            reason = master.watch_idle(now, self.joblist)
            self.save_lifetime()
            if reason is None:
                return False
            ctx.log.warning("%s: stopping Disco, telling the nodes (signed heartbeat reply), "
                            "then powering off", reason)
            master.stop_disco()
            self.save_lifetime()
            return False
        pending = master.untold()
        if pending and now - since < idle.STOP_GRACE:
            return False
        if pending:
            ctx.log.warning("not told to stop (no heartbeat in %d s): %s; their TTL still holds",
                            idle.STOP_GRACE, ", ".join(pending))
        self.stopped = stopping
        self.save_lifetime()
        ttl.power_off(ctx, stopping)
        return True

    def save_lifetime(self):
        """The master's lifetime view in state.json, written only when it changed
        (the clock fields aside)."""
        if self.master is None:
            return
        view = self.master.lifetime()
        key = dict(view, now=None, idle=dict(view.get("idle") or {}, idle_for=None))
        if key != self._lifetime_saved:
            self._lifetime_saved = key
            self.state.set("lifetime", view)

    # -- a node: the heartbeat ------------------------------------------------------------

    def heartbeat(self):
        try:
            welcome = node.join_once(self.ctx, self.spec, self.identity())
        except (node.JoinError, ValueError) as exc:
            self.ctx.log.info("heartbeat: %s", exc)
            return False
        if self.follow(welcome):
            return True
        if node.welcome_digest(welcome) != node.welcome_digest(self.welcome):
            self.ctx.log.warning("heartbeat: the master's identity changed; rewriting trust")
            self.welcome = welcome
            self.state.run_phase("trust", self.node_trust)
            self.state.run_phase("dns", self.node_dns)
        return True

    # -- the end -------------------------------------------------------------------------

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.master is not None:
            self.master.stop_disco()

    def exit_on_sigterm(self):
        """SIGTERM (docker stop/restart, systemd stop) ends the agent through stop()."""
        def handler(signum, frame):
            raise SystemExit(128 + signum)
        # Only for the real machine (root "/"), never in a test's temporary root.
        if getattr(self.ctx, "root", None) == "/" and \
                threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)
