"""The named, idempotent, resumable phases of a first boot.

  spec -> keys -> services -> master: serve -> trust -> dns -> disco
                              node:   join  -> trust -> dns -> disco

Each phase logs ``phase NAME: ok|failed: reason`` and records itself in
/var/lib/imagebake/state.json. What runs after the boot (serving, heartbeats,
the TTL and the idle stop) is loop.py.
"""

import os

from . import disco_config, dns, imds, keys, node, services, source, ttl
from .addresses import master_own_addresses
from .fsutil import makedirs, write_atomic, write_in_place
from .master import JoinServer, Master
from .protocol import is_unicast
from .spec import master_name
from .state import PhaseFailed, State


class Boot(object):
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
        self.stopped = None  # the reason, once this machine was told to stop

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
                             self.host_pubkey, cores=node.cpu_count())
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
        ok, text = self.master.start_disco()
        self.state.set("disco", text)
        if not ok:
            raise PhaseFailed(text)
        return text

    # -- node ------------------------------------------------------------------

    def identity(self):
        spec = self.spec
        addresses = self.addresses or node.local_addresses(spec["master"]["address"],
                                                           spec["master"]["join_port"])
        return node.Identity(self.hostname, addresses, node.cpu_count(), self.disco_pubkey,
                             self.host_pubkey)

    def phase_join(self, max_attempts=None):
        # Not trusted yet: the master keeps this node out of Disco's table until the join
        # at the end of the boot (Agent.confirm), once the trust and dns phases are done.
        self.welcome = node.join_until_welcome(self.ctx, self.spec, self.identity(),
                                               max_attempts=max_attempts, trusted=False)
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

    # -- the whole boot ------------------------------------------------------------

    def setup(self):
        """spec, keys, services, then the role's phases (the master starts serving).
        False when the TTL had already passed (the machine powers off instead)."""
        run = self.state.run_phase
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
