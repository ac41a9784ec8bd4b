"""The master side: join server, node registry, and the one batch writer.

All writes on the master happen in Master.apply(), under one lock: it renders
every managed file from the in-memory registry and writes each atomically only
when its content changed; dnsmasq is reloaded only when the hosts file changed
and Disco is told only when its hosts table changed.
"""

import socket
import threading
import time
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, HTTPServer

from . import disco_config, dns, idle, notice, ready, services, ttl
from .fsutil import dump_json, load_json, write_atomic
from .protocol import (
    MAX_BODY,
    ProtocolError,
    ReplayCache,
    check_extend_fields,
    check_join_fields,
    check_leave_fields,
    check_notice_fields,
    is_unicast,
    make_extend_reply,
    make_leave_reply,
    make_notice_reply,
    make_status_reply,
    make_welcome,
    open_envelope,
    seal,
)
from .spec import master_name
from .sshfiles import (
    known_hosts_line,
    restricted_key,
    write_authorized_keys,
    write_known_hosts,
)

NODES_FILE = "/var/lib/imagebake/nodes.json"
IDENTITY_FIELDS = ("hostname", "address", "addresses", "cores", "disco_pubkey", "host_pubkey")
# A node with a spot notice whose heartbeat (node.HEARTBEAT, 30 s) stopped this long ago
# is gone: the master forgets it (membership, Disco's table, DNS, known_hosts).
GONE_AFTER = 90
# While Disco's table is not pushed (Disco still booting after `disco start`, or a failed
# call), the pusher thread tries again this often.
PUSH_RETRY = 0.5


class Master(object):
    def __init__(self, ctx, spec, hostname, addresses, disco_pubkey, host_pubkey, cores=1):
        self.ctx = ctx
        self.spec = spec
        self.hostname = hostname
        self.addresses = list(addresses)
        self.disco_pubkey = disco_pubkey
        self.host_pubkey = host_pubkey
        self.cores = cores
        self.lock = threading.Lock()
        self.allow_loopback = bool(getattr(ctx, "allow_loopback", False))
        # Messages from before this process started are refused: a join captured
        # before a restart cannot be replayed after it.
        self.replay = ReplayCache(not_before=ctx.now())
        self.last_seen = {}
        self.nodes = self._load()
        # Nodes a signed `leave` (invoke shrink) removed: hostname -> host key. A join from
        # that name with that key (the removed machine's heartbeat) is refused; a new
        # machine that takes the name has a new host key and joins as usual.
        self.left = self._load_left()
        # Joined with "trusted": false and no trusted join since: the node has not written
        # this master's keys and resolver yet, so it stays out of Disco's hosts table
        # (Disco would ssh to it before its authorized_keys exists). Not persisted: a
        # restarted master takes reloaded nodes as trusted (they were set up before).
        self.pending = set()
        self.disco = "not configured yet"
        self.disco_started = False
        self.disco_dirty = False
        self.push_failing = False
        self.pusher = None
        self.closing = threading.Event()
        self.applies = 0
        # Lifetime: the idle watcher (made at the first watch_idle when the spec has
        # idle_stop) and, once the cluster is stopping, the reason every heartbeat
        # reply then carries as a signed stop order; the nodes told so far.
        self.idle = None
        self.disco_present = True
        self.stopping = None
        self.stopping_since = None
        self.told = set()
        # Spot interruption notices: hostname -> {"address", "since", "notices": [...]}
        # (nodes, sent signed by their agents), and this machine's own.
        self.interrupted = {}
        self.own_notices = []

    # -- registry ------------------------------------------------------------

    def _load(self):
        data = load_json(self.ctx.path(NODES_FILE), {}) or {}
        nodes = {}
        for entry in data.get("nodes", []):
            if isinstance(entry, dict) and all(f in entry for f in IDENTITY_FIELDS):
                nodes[entry["hostname"]] = dict((f, entry[f]) for f in IDENTITY_FIELDS)
        if nodes:
            self.ctx.log.info("registry: reloaded %d node(s) from %s", len(nodes), NODES_FILE)
        return nodes

    def _load_left(self):
        data = load_json(self.ctx.path(NODES_FILE), {}) or {}
        left = data.get("left") if isinstance(data, dict) else None
        return dict((k, v) for k, v in (left or {}).items()
                    if isinstance(k, str) and isinstance(v, str))

    def _register(self, entry):
        """Update the registry; what changed: "" (nothing), "new" (a new member),
        "keys" (its keys: a new machine under the name), "other" (address, cores, or
        another member evicted from the address)."""
        log = self.ctx.log
        name = entry["hostname"]
        changed = ""
        for other in sorted(self.nodes):
            if other != name and self.nodes[other]["address"] == entry["address"]:
                log.warning("node %s takes address %s from %s: %s removed",
                            name, entry["address"], other, other)
                del self.nodes[other]
                self.pending.discard(other)
                changed = "other"
        old = self.nodes.get(name)
        if old == entry:
            return changed
        if old is None:
            log.info("node %s joined from %s", name, entry["address"])
            changed = "new"
        elif (old["disco_pubkey"], old["host_pubkey"]) != (entry["disco_pubkey"],
                                                           entry["host_pubkey"]):
            log.warning("node %s re-joined with changed keys: its entries are replaced", name)
            changed = "keys"
        else:
            log.info("node %s re-joined with changed address/cores", name)
            changed = "other"
        self.nodes[name] = entry
        return changed

    def _trust(self, name, change, trusted):
        """Whether NAME's join changes its place in Disco's table: a new machine (a new
        member, new keys) that has not written our keys yet waits outside it; its
        trusted join lets it in. A member already in the table never leaves it here."""
        if not trusted and change in ("new", "keys"):
            self.pending.add(name)
            return True
        if trusted and name in self.pending:
            self.pending.discard(name)
            self.ctx.log.info("node %s is set up: Disco may start it", name)
            return True
        return False

    def in_disco(self):
        """The members Disco's hosts table lists (sorted by name)."""
        return [self.nodes[n] for n in sorted(self.nodes) if n not in self.pending]

    def hosts(self):
        """[[name, address]]: the master first, then the nodes by name."""
        out = [[self.hostname, self.addresses[0]]]
        for name in sorted(self.nodes):
            out.append([name, self.nodes[name]["address"]])
        return out

    def summary(self):
        expected = self.spec["expected_nodes"]
        now = self.ctx.now()
        nodes = []
        for name in sorted(self.nodes):
            node = self.nodes[name]
            seen = self.last_seen.get(name)
            nodes.append({"hostname": name, "address": node["address"],
                          "addresses": node["addresses"], "cores": node["cores"],
                          "host_pubkey": node["host_pubkey"],
                          "last_seen_ago": (now - seen) if seen is not None else None})
        return {"master": self.hostname, "master_addresses": self.addresses,
                "host_pubkey": self.host_pubkey, "expected_nodes": expected,
                "joined": len(nodes),
                # not while a joined node is still setting up (outside Disco's table)
                "ready": ready.enough_joined(len(nodes), expected) and not self.pending,
                "nodes": nodes, "setting_up": sorted(self.pending),
                "disco": self.disco, "lifetime": self.lifetime(),
                "ddfs_replicas": disco_config.replicas(self.spec, len(nodes)),
                "interrupted": dict((name, notice.describe(entry["notices"][-1]))
                                    for name, entry in sorted(self.interrupted.items())),
                "master_notice": (notice.describe(self.own_notices[-1])
                                  if self.own_notices else None)}

    def lifetime(self):
        """TTL deadline in force and the idle-stop state (status shows both)."""
        now = self.ctx.now()
        out = {"now": now, "ttl_deadline": ttl.deadline(self.ctx, self.spec),
               "ttl_moved": ttl.moved_deadline(self.ctx) is not None,
               "idle_stop": self.spec.get("idle_stop"), "stopping": self.stopping,
               "stopping_since": self.stopping_since, "told": sorted(self.told)}
        if self.idle is not None:
            out["idle"] = self.idle.view(now, self.disco_present)
        return out

    # -- Disco on this machine -------------------------------------------------------

    def start_disco(self):
        """Write the config and start Disco, or push the table to a running one.
        Returns (ok, text): text is what status shows as "disco".

        `disco start` runs without the lock: joins go on meanwhile (they only wrote
        the table's file then). Disco reads that file when its VM boots, some seconds
        after `disco start` returned, and answers its API later still: the table is
        pushed once more, retried by the pusher thread until Disco takes it."""
        ctx = self.ctx
        with self.lock:
            self.apply()
        exe = disco_config.disco_installed(ctx)
        if exe is None:
            with self.lock:
                self.disco = "absent: config written, not started"
            return True, self.disco
        status = ctx.runner.run([exe, "status"])
        started = not (status.ok and "running" in status.out)
        if started:
            result = ctx.runner.run([exe, "start"])
            if not result.ok:
                with self.lock:
                    self.disco = "start failed: %s" % result.out.strip()[-200:]
                return False, self.disco
        with self.lock:
            self.disco_started = True
            self.disco_dirty = True
            self.disco = "running (started)" if started else "running; config push pending"
            if not started:
                self.apply()  # push the table to the running master
        self.start_pusher()
        return True, self.disco

    def start_pusher(self, interval=PUSH_RETRY):
        """A thread that pushes Disco's table again every INTERVAL s while a push is
        pending (Disco still booting, or a failed call); it ends with stop_pusher()."""
        if self.pusher is not None:
            return
        self.closing.clear()

        def run():
            while not self.closing.wait(interval):
                with self.lock:
                    if self.disco_dirty and self.disco_started:
                        self.apply()

        self.pusher = threading.Thread(target=run, name="disco-push")
        self.pusher.daemon = True
        self.pusher.start()

    def stop_pusher(self):
        self.closing.set()
        if self.pusher is not None:
            self.pusher.join(5)
            self.pusher = None

    def stop_disco(self):
        """`disco stop` when this master started (or found) Disco running, so its VM
        ends the slaves' Erlang nodes while the network is still up (after a plain kill
        they linger until the distribution tick notices, and a restarted master cannot
        start them again meanwhile). Bounded by the runner's timeout. None when there
        was nothing to stop, else whether `disco stop` succeeded."""
        self.stop_pusher()
        if not self.disco_started:
            return None
        exe = disco_config.disco_installed(self.ctx)
        if exe is None:
            return None
        result = self.ctx.runner.run([exe, "stop"])
        self.disco_started = False
        self.ctx.log.info("disco stop: %s", "ok" if result.ok else result.out.strip()[-200:])
        return result.ok

    # -- idle stop --------------------------------------------------------------------

    def watch_idle(self, now, joblist):
        """One step of the idle stop (see idle.py): ask Disco for its jobs (joblist(port)),
        and once the cluster was idle for idle_stop seconds start stopping (every
        heartbeat reply then carries the stop order). Returns the reason when it decided
        to stop at this step, else None."""
        idle_stop = self.spec.get("idle_stop")
        if not idle_stop or self.stop_order()[0] is not None:
            return None
        if self.idle is None:
            self.idle = idle.IdleWatch(idle_stop, now)
            self.disco_present = disco_config.disco_installed(self.ctx) is not None
        if self.disco_present:
            self.idle.observe(now, joblist(self.spec["disco_port"]))
        if not self.idle.due(now):
            return None
        reason = "idle stop: no Disco job for %d s" % idle_stop
        self.begin_stop(reason, now)
        return reason

    def begin_stop(self, reason, now):
        """From now on every heartbeat reply carries the signed stop order REASON."""
        with self.lock:
            self.stopping = reason
            self.stopping_since = now

    def stop_order(self):
        """(reason, since) of the stop in progress, or (None, None)."""
        with self.lock:
            return self.stopping, self.stopping_since

    def untold(self):
        """Members that have not received the stop order yet (sorted)."""
        with self.lock:
            return sorted(set(self.nodes) - self.told)

    # -- the one batch writer ------------------------------------------------------

    def apply(self):
        """Render every managed file from the registry; write only what changed.

        Call with self.lock held (handle_join does) or before serving.
        """
        ctx, spec = self.ctx, self.spec
        nodes = [self.nodes[n] for n in sorted(self.nodes)]
        changed = []
        registry = {"cluster": spec["cluster"],
                    "nodes": [dict((f, n[f]) for f in IDENTITY_FIELDS) for n in nodes]}
        if self.left:
            registry["left"] = dict(self.left)
        if write_atomic(ctx.path(NODES_FILE), dump_json(registry), mode=0o600, dir_mode=0o700):
            changed.append("nodes.json")
        names = [self.hostname]
        if master_name(spec) != self.hostname:
            names.append(master_name(spec))
        known = [known_hosts_line(names + self.addresses + ["localhost"], self.host_pubkey)]
        known += [known_hosts_line([n["hostname"], n["address"]], n["host_pubkey"])
                  for n in nodes]
        if write_known_hosts(ctx, known):
            changed.append("known_hosts")
        # Least privilege: nodes' keys are never authorized on the master.
        authorized = ([restricted_key(self.disco_pubkey, ["127.0.0.1", "::1"] + self.addresses)]
                      if spec["master_workers"] > 0 else [])
        if write_authorized_keys(ctx, authorized):
            changed.append("authorized_keys")
        if dns.write_hosts(ctx, self.hosts()):
            changed.append("hosts")
            ok, how = services.restart(ctx, "dnsmasq", reload_only=True)
            if not ok:
                ctx.log.warning("dnsmasq reload: %s", how)
        rows = disco_config.host_rows(spec, self.hostname, self.cores, self.in_disco())
        if disco_config.write_settings(ctx, spec, self.hostname, len(nodes)):
            changed.append("settings.py")
            if self.disco_started:
                ctx.log.warning("Disco settings changed; they apply at the next Disco restart")
        if disco_config.write_config(ctx, spec, rows):
            changed.append("disco config")
            self.disco_dirty = True
        if self.disco_dirty and self.disco_started:
            ok, text = disco_config.save_config_table(rows, spec["disco_port"])
            if ok:
                self.disco_dirty = False
                self.push_failing = False
                self.disco = "running: %d host(s) configured" % len(rows)
                changed.append("disco api")
            elif not self.push_failing:  # one line per streak: Disco boots for seconds
                self.push_failing = True
                ctx.log.warning("save_config_table failed (retried every %.1f s until Disco "
                                "takes it): %s", PUSH_RETRY, text)
        self.applies += 1
        if changed:
            ctx.log.info("apply: wrote %s", ", ".join(changed))
        return changed

    # -- requests ------------------------------------------------------------------
    #
    # Every route is one entry of ROUTES (below): its message type, who must have
    # signed it (a node's join token, or the launcher's own key) and two methods:
    # check_X(msg, peer) raises ProtocolError (a 403), act_X(msg, peer) does the work
    # and returns (200, reply msg) or (code, text). handle() is the one signed-request
    # wrapper: open (MAC, cluster, window, replay), check, act, seal the reply.

    def key_for(self, signer):
        """The HMAC key a route's signer holds; None when this master has none."""
        if signer == NODE:
            return self.spec["token"]
        return self.spec.get("launcher_key")

    def handle(self, path, body, peer):
        route = ROUTES[path]
        log = self.ctx.log
        key = self.key_for(route.signer)
        try:
            if key is None:
                raise ProtocolError("this master has no launcher key (spec without "
                                    "launcher_key): cluster-wide orders are refused")
            msg = open_envelope(key, body, self.spec["cluster"], self.ctx.now(), route.type,
                                self.replay)
            route.check(self, msg, peer)
        except ProtocolError as exc:
            log.warning("%s from %s refused: %s", route.type, peer, exc)
            return 403, ("refused: %s\n" % exc).encode("ascii", "replace")
        code, reply = route.act(self, msg, peer)
        if code != 200:
            return code, reply.encode("ascii", "replace")
        return 200, seal(key, reply)

    def handle_join(self, body, peer):
        return self.handle("/v1/join", body, peer)

    def handle_extend(self, body, peer):
        return self.handle("/v1/extend", body, peer)

    def handle_leave(self, body, peer):
        return self.handle("/v1/leave", body, peer)

    def handle_status(self, body, peer):
        return self.handle("/v1/status", body, peer)

    def check_join(self, msg, peer):
        check_join_fields(msg)
        if msg["hostname"] in (self.hostname, master_name(self.spec), "localhost"):
            raise ProtocolError("hostname is reserved for the master")
        # Only the address the join came from is recorded (and pinned, and put in
        # DNS): a token holder cannot claim another machine's address.
        if not is_unicast(peer, self.allow_loopback):
            raise ProtocolError("peer address %s cannot be a member" % peer)
        if peer in self.addresses:
            raise ProtocolError("address belongs to the master")
        if peer not in msg["addresses"]:
            raise ProtocolError("the join does not come from an address it lists")
        if self.left.get(msg["hostname"]) == msg["host_pubkey"]:
            raise ProtocolError("this node has left the cluster (shrink)")
        # A notice kept for a name not yet joined keeps out only the address it came from:
        # a token holder cannot pre-empt another machine's name with a notice.
        noticed = self.interrupted.get(msg["hostname"])
        if noticed is not None and msg["hostname"] not in self.nodes \
                and noticed["address"] == peer:
            raise ProtocolError("this node has a spot interruption notice: it does not join")
        # A node joins as itself: a name another machine holds (other host key, other
        # address) is not taken over; that machine must leave first (invoke shrink).
        with self.lock:
            held = self.nodes.get(msg["hostname"])
        if held is not None and held["host_pubkey"] != msg["host_pubkey"] \
                and held["address"] != peer:
            raise ProtocolError("hostname %s is held by another machine" % msg["hostname"])

    def act_join(self, msg, peer):
        spec, log = self.spec, self.ctx.log
        entry = {"hostname": msg["hostname"], "address": peer,
                 "addresses": [peer], "cores": msg["cores"],
                 "disco_pubkey": msg["disco_pubkey"], "host_pubkey": msg["host_pubkey"]}
        with self.lock:
            noticed = self.interrupted.get(entry["hostname"])
            if noticed is not None and noticed["address"] != peer:
                # a notice sent under this name from another address was not this node's
                del self.interrupted[entry["hostname"]]
            change = self._register(entry)
            if self._trust(entry["hostname"], change, msg.get("trusted", True)) or change:
                self.apply()
            self.last_seen[entry["hostname"]] = self.ctx.now()
            hosts = self.hosts()
            stop = self.stopping
            if stop:
                self.told.add(entry["hostname"])
                log.warning("stop order (%s) sent to %s", stop, entry["hostname"])
        return 200, make_welcome(spec["cluster"], self.ctx.now(), msg["nonce"], self.hostname,
                                 self.addresses, self.disco_pubkey, self.host_pubkey, hosts,
                                 ttl_deadline=ttl.deadline(self.ctx, spec), stop=stop)

    def check_extend(self, msg, peer):
        check_extend_fields(msg)

    def act_extend(self, msg, peer):
        """Signed `extend` (the launcher): the TTL deadline becomes now + ttl_seconds, is
        recorded and re-armed here; nodes follow from their next heartbeat reply."""
        spec, log = self.spec, self.ctx.log
        with self.lock:
            if self.stopping:
                return 409, "refused: the cluster is stopping (%s)\n" % self.stopping
            previous = ttl.deadline(self.ctx, spec)
            new = self.ctx.now() + msg["ttl_seconds"]
            try:
                armed = ttl.move(self.ctx, spec, new)
            except (ValueError, RuntimeError, OSError) as exc:
                log.error("extend: %s", exc)
                return 500, "failed: %s\n" % exc
            log.warning("ttl deadline moved from %s to %d by %s (%s)", previous, new, peer,
                        armed)
        return 200, make_extend_reply(spec["cluster"], self.ctx.now(), msg["nonce"], new,
                                      previous, armed or "")

    def check_leave(self, msg, peer):
        check_leave_fields(msg)
        if any(n in (self.hostname, master_name(self.spec)) for n in msg["hostnames"]):
            raise ProtocolError("the master cannot leave")

    def act_leave(self, msg, peer):
        """Signed `leave` (the launcher's shrink, after the drain): the named nodes leave
        the membership, Disco's hosts table (save_config_table), dnsmasq hosts and
        known_hosts in one apply; names not members are reported, not an error."""
        log = self.ctx.log
        with self.lock:
            removed = [n for n in msg["hostnames"] if n in self.nodes]
            unknown = [n for n in msg["hostnames"] if n not in self.nodes]
            for name in removed:
                self.left[name] = self.nodes.pop(name)["host_pubkey"]
                self.pending.discard(name)
                self.last_seen.pop(name, None)
                log.warning("node %s left the cluster (leave from %s)", name, peer)
            if removed:
                self.apply()
            hosts = self.hosts()
        return 200, make_leave_reply(self.spec["cluster"], self.ctx.now(), msg["nonce"],
                                     removed, unknown, hosts)

    def check_notice(self, msg, peer):
        check_notice_fields(msg)
        name = msg["hostname"]
        if name in (self.hostname, master_name(self.spec)):
            raise ProtocolError("the master watches its own notices")
        if not is_unicast(peer, self.allow_loopback):
            raise ProtocolError("peer address %s cannot be a member" % peer)
        member = self.nodes.get(name)
        if member is not None and member["address"] != peer:
            raise ProtocolError("a notice for %s must come from its address" % name)

    def act_notice(self, msg, peer):
        """Signed `notice` (a node's agent saw EC2's spot instance-action or rebalance
        recommendation): at once no new tasks there (Disco's blacklist) and DDFS moves its
        data away (gc_blacklist, then a GC run started: GC is what copies it), one log
        line; status shows it interrupted; the node is forgotten once its heartbeat stops
        (forget_gone). A notice from a node that has
        not joined yet is kept, and its join is refused. The same notice twice: no-op."""
        name, log = msg["hostname"], self.ctx.log
        seen = {"kind": msg["kind"], "action": msg["action"], "time": msg["time"]}
        with self.lock:
            entry = self.interrupted.get(name)
            if entry is not None and seen in entry["notices"]:
                return 200, make_notice_reply(self.spec["cluster"], self.ctx.now(),
                                              msg["nonce"], "known")
            first = entry is None
            if first:
                entry = self.interrupted[name] = {"address": peer, "since": self.ctx.now(),
                                                  "notices": []}
            entry["notices"].append(seen)
            member = name in self.nodes
            running = self.disco_started
        if not first:
            outcome = "already blacklisted" if member else "not a member"
        elif not member:
            outcome = "not a member yet: its join will be refused"
        elif not running:
            outcome = "Disco is not running here: nothing to blacklist"
        else:
            failed = ["%s: %s" % (path, text.strip()[:80])
                      for path, ok, text in disco_config.blacklist(name, self.spec["disco_port"])
                      if not ok]
            outcome = ("blacklisted in Disco and DDFS; %s"
                       % disco_config.start_gc(self.spec["disco_port"]) if not failed
                       else "blacklist failed (%s)" % "; ".join(failed))
        log.warning("spot notice from %s (%s): %s: %s", name, peer, notice.describe(seen),
                    outcome)
        return 200, make_notice_reply(self.spec["cluster"], self.ctx.now(), msg["nonce"],
                                      outcome)

    def own_notice(self, seen):
        """This machine (the master) has a spot notice: nothing can move the master's
        state elsewhere; status says so in one line."""
        with self.lock:
            if seen in self.own_notices:
                return False
            self.own_notices.append(seen)
        self.ctx.log.warning("spot notice for the master itself: %s: the master will go, and "
                             "the cluster's data with it", notice.describe(seen))
        return True

    def forget_gone(self, now):
        """Nodes with a spot notice and no heartbeat for GONE_AFTER s leave the cluster as
        after a shrink; a notice from a node that never joined is dropped after as long.
        Returns the names forgotten."""
        gone = []
        with self.lock:
            for name in sorted(self.interrupted):
                entry = self.interrupted[name]
                last = max(entry["since"], self.last_seen.get(name, entry["since"]))
                if now - last < GONE_AFTER:
                    continue
                del self.interrupted[name]
                if name in self.nodes:
                    self.left[name] = self.nodes.pop(name)["host_pubkey"]
                    self.pending.discard(name)
                    self.last_seen.pop(name, None)
                    gone.append(name)
            if gone:
                self.apply()
        for name in gone:
            self.ctx.log.warning("node %s is gone after its spot notice (no heartbeat for "
                                 "%d s): forgotten", name, GONE_AFTER)
        return gone

    def check_status(self, msg, peer):
        pass  # the envelope is all a status request carries

    def act_status(self, msg, peer):
        with self.lock:
            summary = self.summary()
        return 200, make_status_reply(self.spec["cluster"], self.ctx.now(), msg["nonce"],
                                      summary)


NODE = "node"  # signed with the join token every machine's spec carries
LAUNCHER = "launcher"  # signed with the launcher's key, only in the master's spec
Route = namedtuple("Route", "type signer check act")
# The one route table: path -> who signs, and what the master does with it. A node's
# token joins (and heartbeats) as itself and nothing more; every cluster-wide order
# and the status the launcher pins host keys from need the launcher's key.
ROUTES = {
    "/v1/join": Route("join", NODE, Master.check_join, Master.act_join),
    "/v1/status": Route("status", LAUNCHER, Master.check_status, Master.act_status),
    "/v1/extend": Route("extend", LAUNCHER, Master.check_extend, Master.act_extend),
    "/v1/leave": Route("leave", LAUNCHER, Master.check_leave, Master.act_leave),
    "/v1/notice": Route("notice", NODE, Master.check_notice, Master.act_notice),
}


class _Handler(BaseHTTPRequestHandler):
    server_version = "imagebake-agent/1"
    sys_version = ""
    protocol_version = "HTTP/1.0"

    def setup(self):
        self.timeout = self.server.request_deadline  # per receive; the watchdog does the whole
        BaseHTTPRequestHandler.setup(self)

    def _reply(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype if code == 200 else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server naming
        if self.path not in ROUTES:
            return self._reply(404, b"not found\n")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._reply(411, b"length required\n")
        if length < 0 or length > MAX_BODY:
            return self._reply(413, b"body too large\n")
        body = self.rfile.read(length)
        code, out = self.server.master.handle(self.path, body, self.client_address[0])
        self._reply(code, out)

    def do_GET(self):  # noqa: N802
        if self.path in ROUTES:
            return self._reply(405, b"use POST with a signed message (docs/agent.md)\n")
        self._reply(404, b"not found\n")

    def log_message(self, fmt, *args):
        pass  # the master logs its own reason lines


class JoinServer(HTTPServer):
    """The join/status HTTP server: bounded, with a deadline for every request.

    At most max_workers requests are handled at once, at most per_peer from one
    address; a connection beyond either limit is closed at once. Every request
    must be complete (read, handled, answered) within request_deadline seconds
    of its accept, or its socket is shut down (a byte every few seconds does
    not keep it open).
    """

    allow_reuse_address = True
    request_queue_size = 128
    request_deadline = 10.0
    max_workers = 32
    per_peer = 4

    def __init__(self, master, address="0.0.0.0", port=8990):
        HTTPServer.__init__(self, (address, port), _Handler)
        self.master = master
        self.turned_away = 0
        self._active = {}  # socket -> (peer, deadline)
        self._guard = threading.Lock()
        self._closing = threading.Event()

    def start(self):
        thread = threading.Thread(target=self.serve_forever, args=(0.1,), name="join-server")
        thread.daemon = True
        thread.start()
        watchdog = threading.Thread(target=self._watchdog, name="join-deadline")
        watchdog.daemon = True
        watchdog.start()
        return thread

    def _count(self, peer):
        return sum(1 for p, _ in self._active.values() if p == peer)

    def process_request(self, request, client_address):
        peer = client_address[0]
        with self._guard:
            if len(self._active) >= self.max_workers or self._count(peer) >= self.per_peer:
                self.turned_away += 1
                refuse = True
            else:
                self._active[request] = (peer, time.time() + self.request_deadline)
                refuse = False
        if refuse:
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._work, args=(request, client_address))
        thread.daemon = True
        thread.start()

    def _work(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a broken connection is not the agent's problem
            pass
        finally:
            with self._guard:
                self._active.pop(request, None)
            self.shutdown_request(request)

    def _watchdog(self):
        """Shut every request past its deadline, and free its slot at once: a handler
        that still waits (on master.lock behind a slow apply) no longer holds it."""
        while not self._closing.wait(0.2):
            now = time.time()
            with self._guard:
                late = [sock for sock, (_, deadline) in self._active.items() if deadline < now]
                for sock in late:
                    del self._active[sock]
            for sock in late:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request, client_address):
        pass  # a peer that hangs up or times out is not an agent error

    def server_close(self):
        self._closing.set()
        HTTPServer.server_close(self)

    @property
    def port(self):
        return self.server_address[1]
