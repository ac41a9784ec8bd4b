"""The named, idempotent, resumable phases of a first boot.

  spec -> keys -> services -> master: serve -> trust -> dns -> disco (then serve forever)
                              node:   join  -> trust -> dns -> disco (then heartbeat)

Each phase logs ``phase NAME: ok|failed: reason`` and records itself in
/var/lib/imagebake/state.json.
"""

import os
import signal
import socket
import threading

from . import disco_config, dns, idle, imds, keys, node, services, source, ttl
from .fsutil import makedirs, write_atomic, write_in_place
from .master import JoinServer, Master
from .protocol import is_unicast
from .spec import is_ipv4, master_name
from .state import PhaseFailed, State

ROUTE_PROBE = "192.0.2.1"  # TEST-NET-1: a UDP connect only asks the routing table


def is_own_address(address):
    """True when this machine has address (binding to it works)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((address, 0))
        return True
    except (OSError, socket.error):
        return False
    finally:
        sock.close()


def route_address(probe=ROUTE_PROBE):
    """The source address the kernel picks toward probe (no packet is sent)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((probe, 9))
        return sock.getsockname()[0]
    except (OSError, socket.error):
        return None
    finally:
        sock.close()


def interface_addresses(ctx):
    """Global-scope IPv4 addresses from `ip -4 -o addr show scope global`."""
    result = ctx.runner.run(["ip", "-4", "-o", "addr", "show", "scope", "global"])
    found = []
    if result.ok:
        for line in result.out.splitlines():
            words = line.split()
            if "inet" in words:
                address = words[words.index("inet") + 1].split("/")[0]
                if is_ipv4(address):
                    found.append(address)
    return found


def master_own_addresses(spec, ctx=None, origin=None):
    """The master's own IPv4 address, learned on the machine; never 127.0.0.0/8.

    - master.address in the spec (the Docker launcher sets it): taken only when
      it is one of this machine's addresses;
    - spec from cloud-init or IMDS: IMDS meta-data/local-ipv4;
    - else the address routing out (the cluster network), then the first global
      interface address.
    """
    allow_loopback = bool(getattr(ctx, "allow_loopback", False))
    given = spec["master"].get("address")
    if given:
        address = given
        if not is_ipv4(address):
            try:
                address = socket.gethostbyname(given)
            except (socket.error, UnicodeError):
                raise PhaseFailed("master.address %s does not resolve" % given) from None
        if not is_unicast(address, allow_loopback):
            raise PhaseFailed("master.address %s is loopback, link-local or not unicast"
                              % address)
        if not is_own_address(address):
            raise PhaseFailed("master.address %s is not one of this machine's addresses"
                              % address)
        return [address]
    candidates = []
    imds_url = getattr(ctx, "imds_url", None)
    if imds_url and origin and (origin == source.CLOUD_INIT or origin.startswith("imds")):
        try:
            candidates.append(imds.get_metadata(imds_url, imds.LOCAL_IPV4_PATH))
        except imds.NoIMDS as exc:
            if ctx is not None:
                ctx.log.warning("IMDS local-ipv4: %s", exc)
    candidates.append(route_address())
    if ctx is not None:
        candidates += interface_addresses(ctx)
    for address in candidates:
        if address and is_unicast(address, allow_loopback=False):
            return [address]
    raise PhaseFailed("cannot learn this machine's address (no IMDS local-ipv4, no route, "
                      "no global interface address)")


class Agent(object):
    def __init__(self, ctx, spec_path=None, bind_address="0.0.0.0", addresses=None):
        self.ctx = ctx
        self.spec_path = spec_path
        self.bind_address = bind_address
        self.addresses = addresses  # override (tests); else detected
        self.state = State(ctx)
        self.spec = None
        self.hostname = None
        self.host_pubkey = None
        self.disco_pubkey = None
        self.master = None
        self.server = None
        self.welcome = None
        self.origin = None
        self.joblist = idle.fetch_joblist  # (port) -> Disco's job list or None; tests swap it
        self.stopped = None  # the reason, once this machine was told to stop
        self._lifetime_saved = None

    # -- shared phases --------------------------------------------------------

    def phase_spec(self):
        # First, whatever the source: only root may reach the metadata service.
        self.state.set("imds_fence", imds.fence_metadata(self.ctx))
        spec, origin, notes = source.find_spec(self.ctx, self.spec_path)
        source.persist_spec(self.ctx, spec, origin)
        self.spec = spec
        self.origin = origin
        for key, value in notes.items():
            self.state.set(key, value)
        self.state.set("role", spec["role"])
        self.state.set("cluster", spec["cluster"])
        self.state.set("expected_nodes", spec["expected_nodes"])
        self.hostname = self._wanted_hostname()
        self.state.set("hostname", self.hostname)
        hostname_note = self._set_hostname()
        return "from %s; %s %s of cluster %s%s" % (
            origin, spec["role"], self.hostname, spec["cluster"], hostname_note)

    def _wanted_hostname(self):
        spec = self.spec
        if spec.get("hostname"):
            return spec["hostname"]
        if spec["role"] == "master" and spec["master"].get("name"):
            return master_name(spec)
        return self.ctx.machine_hostname().lower()

    def _set_hostname(self):
        """Erlang short names and Disco's hosts table use this name: make it the machine's."""
        if self.hostname == self.ctx.machine_hostname():
            return ""
        path = self.ctx.path("/etc/hostname")
        if os.path.exists(path):
            write_in_place(path, self.hostname + "\n")  # a bind mount in Docker
        else:
            write_atomic(path, self.hostname + "\n", mode=0o644)
        result = self.ctx.runner.run(["hostname", self.hostname])
        return "; hostname set%s" % ("" if result.ok else " in /etc/hostname only (%s)"
                                     % result.out.strip()[-100:])

    def phase_keys(self):
        self.host_pubkey, host_made = keys.ensure_host_key(self.ctx)
        self.disco_pubkey, disco_made = keys.ensure_disco_key(self.ctx, self.hostname)
        keys.write_erlang_cookie(self.ctx, self.spec["cookie"])
        return "host key %s, disco key %s, erlang cookie written" % (
            "made" if host_made else "kept", "made" if disco_made else "kept")

    def phase_services(self):
        done = []
        ok, how = services.restart(self.ctx, "sshd")
        if not ok:
            raise PhaseFailed("sshd: %s" % how)
        done.append(how)
        if self.spec["role"] == "master":
            makedirs(os.path.dirname(self.ctx.path(dns.HOSTS_FILE)), 0o755)
            ok, how = services.restart(self.ctx, "dnsmasq")
            if not ok:
                raise PhaseFailed("dnsmasq: %s" % how)
            done.append(how)
        return "; ".join(done)

    # -- master ----------------------------------------------------------------

    def phase_serve(self):
        spec = self.spec
        if self.addresses:
            addresses = list(self.addresses)
            bad = [a for a in addresses if not is_unicast(a, self.ctx.allow_loopback)]
            if bad:
                raise PhaseFailed("refusing master address(es) %s" % ", ".join(bad))
        else:
            addresses = master_own_addresses(spec, self.ctx, self.origin)
        self.master = Master(self.ctx, spec, self.hostname, addresses, self.disco_pubkey,
                             self.host_pubkey, state=self.state, cores=node.cpu_count())
        self.server = JoinServer(self.master, self.bind_address, spec["master"]["join_port"])
        self.server.start()
        return "listening on %s:%d; master address %s" % (self.bind_address, self.server.port,
                                                          ", ".join(addresses))

    def master_trust(self):
        with self.master.lock:
            changed = self.master.apply()
        return "wrote: %s" % (", ".join(changed) or "nothing (up to date)")

    def master_dns(self):
        dns.save_upstream(self.ctx)
        changed, how = dns.point_resolver(self.ctx, "127.0.0.1")
        return "resolver -> 127.0.0.1 (%s%s)" % (how, "" if changed else ", unchanged")

    def master_disco(self):
        ctx, master = self.ctx, self.master
        with master.lock:
            master.apply()
            exe = disco_config.disco_installed(ctx)
            if exe is None:
                master.disco = "absent: config written, not started"
                self.state.set("disco", master.disco)
                return master.disco
            status = ctx.runner.run([exe, "status"])
            if not (status.ok and "running" in status.out):
                result = ctx.runner.run([exe, "start"])
                if not result.ok:
                    master.disco = "start failed: %s" % result.out.strip()[-200:]
                    self.state.set("disco", master.disco)
                    raise PhaseFailed(master.disco)
                master.disco_started = True
                master.disco_dirty = False
                master.disco = "running (started)"
            else:
                master.disco_started = True
                master.disco_dirty = True
                master.apply()  # push the table to the running master
                if master.disco_dirty:
                    master.disco = "running; config push pending"
            self.state.set("disco", master.disco)
            return master.disco

    # -- node ------------------------------------------------------------------

    def identity(self):
        spec = self.spec
        addresses = self.addresses or node.local_addresses(spec["master"]["address"],
                                                           spec["master"]["join_port"])
        return node.Identity(self.hostname, addresses, node.cpu_count(), self.disco_pubkey,
                             self.host_pubkey)

    def phase_join(self, max_attempts=None):
        self.welcome = node.join_until_welcome(self.ctx, self.spec, self.identity(),
                                               max_attempts=max_attempts)
        self.state.set("master_hostname", self.welcome["master_hostname"])
        self.follow(self.welcome)
        return "welcomed by %s (%d host(s) in the cluster)" % (
            self.welcome["master_hostname"], len(self.welcome["hosts"]))

    def node_trust(self):
        changed = node.write_trust(self.ctx, self.spec, self.welcome)
        return "wrote: %s" % (", ".join(changed) or "nothing (up to date)")

    def node_dns(self):
        changed, how = node.write_dns(self.ctx, self.spec, self.welcome)
        return "resolver -> master (%s%s)" % (how, "" if changed else ", unchanged")

    def node_disco(self):
        disco_config.write_settings(self.ctx, self.spec, self.welcome["master_hostname"],
                                    max(0, len(self.welcome["hosts"]) - 1))
        note = ("installed" if disco_config.disco_installed(self.ctx) else "absent")
        text = "settings written; Disco %s; the master starts this node's Erlang over ssh" % note
        self.state.set("disco", text)
        return text

    # -- driving -----------------------------------------------------------------

    def setup(self):
        """spec, keys, services, then the role's phases (the master starts serving)."""
        run = self.state.run_phase
        self.exit_on_sigterm()
        run("spec", self.phase_spec)
        if ttl.enforce(self.ctx, self.spec):
            return False
        run("keys", self.phase_keys)
        run("services", self.phase_services)
        if self.spec["role"] == "master":
            run("serve", self.phase_serve)
            run("trust", self.master_trust)
            run("dns", self.master_dns)
            run("disco", self.master_disco)
        else:
            run("join", self.phase_join)
            run("trust", self.node_trust)
            run("dns", self.node_dns)
            run("disco", self.node_disco)
        return True

    def forever(self, tick=5.0, max_ticks=None):
        """Master: serve joins; node: heartbeat re-join every 30 s. Both watch the TTL."""
        ticks = 0
        last_join = self.ctx.now()
        while max_ticks is None or ticks < max_ticks:
            ticks += 1
            if self.stopped or ttl.enforce(self.ctx, self.spec):
                return
            if self.spec["role"] == "master" and self.watch_idle():
                return
            self.ctx.sleep(tick)
            if self.spec["role"] == "node" and self.ctx.now() - last_join >= node.HEARTBEAT:
                last_join = self.ctx.now()
                self.heartbeat()

    # -- lifetime: idle stop and a moved TTL ---------------------------------------

    def watch_idle(self):
        """Master: one step of the idle stop (see idle.py); True once it powered off."""
        master, ctx, spec = self.master, self.ctx, self.spec
        idle_stop = spec.get("idle_stop")
        if master is None or not idle_stop:
            return False
        now = ctx.now()
        if master.idle is None:
            master.idle = idle.IdleWatch(idle_stop, now)
            master.disco_present = disco_config.disco_installed(ctx) is not None
        if master.stopping is None:
            if master.disco_present:
                master.idle.observe(now, self.joblist(spec["disco_port"]))
            self.save_lifetime()
            if not master.idle.due(now):
                return False
            reason = "idle stop: no Disco job for %d s" % idle_stop
            with master.lock:
                master.stopping = reason
                master.stopping_since = now
            ctx.log.warning("%s: stopping Disco, telling the nodes (signed heartbeat reply), "
                            "then powering off", reason)
            self.stop_disco()  # no job starts from here on
            self.save_lifetime()
            return False
        with master.lock:
            pending = sorted(set(master.nodes) - master.told)
        if pending and now - master.stopping_since < idle.STOP_GRACE:
            return False
        if pending:
            ctx.log.warning("not told to stop (no heartbeat in %d s): %s; their TTL still holds",
                            idle.STOP_GRACE, ", ".join(pending))
        self.stopped = master.stopping
        self.save_lifetime()
        ttl.power_off(ctx, master.stopping)
        return True

    def save_lifetime(self):
        """The master's lifetime view in state.json, written only when it changed
        (the clock fields aside)."""
        view = self.master.lifetime()
        key = dict(view, now=None, idle=dict(view.get("idle") or {}, idle_for=None))
        if key != self._lifetime_saved:
            self._lifetime_saved = key
            self.state.set("lifetime", view)

    def follow(self, welcome):
        """Node: act on a verified welcome (its MAC, cluster, window and our nonce were
        checked by node.join_once): take a moved TTL deadline, obey a stop order.
        True when this machine was told to stop."""
        ctx = self.ctx
        new = welcome.get("ttl_deadline")
        if new is not None and new != ttl.deadline(ctx, self.spec):
            if new > ctx.now():
                try:
                    how = ttl.move(ctx, self.spec, new)
                    ctx.log.warning("ttl deadline moved to %d by the master (%s)", new, how)
                    self.state.set("ttl_deadline", new)
                except (ValueError, RuntimeError, OSError) as exc:
                    ctx.log.warning("ttl deadline %s from the master not taken: %s", new, exc)
            else:
                ctx.log.warning("ttl deadline %s from the master is past: ignored", new)
        stop = welcome.get("stop")
        if not stop:
            return False
        self.stopped = stop
        self.state.set("stopped", {"reason": stop, "at": ctx.now()})
        ttl.power_off(ctx, "stop order from the master (%s)" % stop)
        return True

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

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        self.stop_disco()

    def stop_disco(self):
        """Master: `disco stop` when this agent started (or found) Disco running, so its
        VM ends the slaves' Erlang nodes while the network is still up (after a plain kill
        they linger until the distribution tick notices, and a restarted master cannot
        start them again meanwhile). Bounded by the runner's timeout."""
        master = self.master
        if master is None or not master.disco_started:
            return None
        exe = disco_config.disco_installed(self.ctx)
        if exe is None:
            return None
        result = self.ctx.runner.run([exe, "stop"])
        master.disco_started = False
        self.ctx.log.info("disco stop: %s", "ok" if result.ok else result.out.strip()[-200:])
        return result.ok

    def exit_on_sigterm(self):
        """SIGTERM (docker stop/restart, systemd stop) ends the agent through stop()."""
        def handler(signum, frame):
            raise SystemExit(128 + signum)
        # Only for the real machine (root "/"), never in a test's temporary root.
        if getattr(self.ctx, "root", None) == "/" and \
                threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)


def status_report(ctx):
    """The state file, plus the master's registry; (report dict, ready bool)."""
    from .fsutil import load_json
    from .master import NODES_FILE
    from .state import STATE_FILE
    state = load_json(ctx.path(STATE_FILE), {}) or {}
    report = dict(state)
    phases = state.get("phases", {})
    if state.get("role") == "master":
        registry = load_json(ctx.path(NODES_FILE), {}) or {}
        nodes = [dict((k, n.get(k)) for k in ("hostname", "address", "addresses", "cores",
                                              "host_pubkey"))
                 for n in registry.get("nodes", [])]
        report["nodes"] = nodes
        report["joined"] = len(nodes)
        ready = (phases.get("disco", {}).get("status") == "ok"
                 and len(nodes) >= int(state.get("expected_nodes", 0)))
    else:
        ready = bool(phases) and all(p.get("status") == "ok" for p in phases.values()) \
            and "disco" in phases
    report["ready"] = ready
    if not state:
        report.setdefault("note", "no state: the agent has not run here")
    return report, ready
