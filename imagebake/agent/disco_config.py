"""Disco's configuration: the hosts table, settings.py and the live API.

Facts (checked in discoproject/disco, see docs/disco-facts.md):
- DISCO_MASTER_CONFIG = DISCO_ROOT/disco_<DISCO_PORT>.config, DISCO_ROOT =
  /usr/var/disco for the Makefile/Debian install: {"hosts": [["node01", "4"]],
  "blacklist": [], "gc_blacklist": []}, worker counts as strings.
- POST /disco/ctrl/save_config_table takes only the hosts list
  [["node01", "4"], ...] (array of [string, string]) and rewrites the file.
- /etc/disco/settings.py holds Python assignments; DISCO_ERLANG is the erl
  command line both for the master and (via slave:start) for every node.
"""

import json
import os

from .fsutil import read_text, write_atomic

SETTINGS_FILE = "/etc/disco/settings.py"
DISCO_ROOT = "/usr/var/disco"
DISCO_BINARIES = ("/usr/bin/disco", "/usr/local/bin/disco")
DDFS_DEFAULT_PUT_PORT = 8990  # Disco's default; collides with the join port


def config_path(spec):
    return DISCO_ROOT + "/disco_%d.config" % spec["disco_port"]


def host_rows(spec, master_hostname, master_cores, nodes):
    """[[name, "count"], ...]: nodes sorted by name; the master only with workers.

    A host listed with 0 workers makes jobs hang (disco issue #601), so the
    master is left out unless master_workers > 0.
    """
    rows = []
    if spec["master_workers"] > 0:
        rows.append([master_hostname, str(spec["master_workers"])])
    for node in sorted(nodes, key=lambda n: n["hostname"]):
        count = spec["workers"] if spec["workers"] is not None else node["cores"]
        rows.append([node["hostname"], str(max(1, int(count)))])
    return rows


def render_config(rows):
    return json.dumps({"hosts": rows, "blacklist": [], "gc_blacklist": []},
                      separators=(", ", ": ")) + "\n"


def storage_hosts(spec, joined):
    """How many hosts store DDFS data: expected (or joined) nodes + master with workers."""
    nodes = spec["expected_nodes"] or joined
    return nodes + (1 if spec["master_workers"] > 0 else 0)


def ddfs_put_port(spec):
    port = DDFS_DEFAULT_PUT_PORT
    taken = (spec["master"]["join_port"], spec["disco_port"])
    while port in taken:
        port += 1
    return port


INSTALL_DEFAULTS = (  # what Disco's `make install` (conf/gen.settings.sh) writes
    ("DISCO_HOME", '"/usr/lib/disco"'),
    ("DISCO_WWW_ROOT", '"/usr/share/disco/master/www"'),
)
BEGIN = "# BEGIN imagebake (managed by the agent)"
END = "# END imagebake"


def _assigned(line):
    head = line.split("=", 1)[0].strip() if "=" in line else ""
    return head if head.replace("_", "").isalnum() and head.isupper() else None


def replicas(spec, joined):
    """DDFS_TAG_MIN_REPLICAS = DDFS_TAG_REPLICAS = DDFS_BLOB_REPLICAS: Disco's 3, at most
    the storage hosts, at least 1."""
    return max(1, min(3, storage_hosts(spec, joined)))


def render_settings(spec, master_hostname, joined, existing=None):
    """settings.py: keep an installed file's other lines, own a block of keys."""
    replicas_ = replicas(spec, joined)
    low, high = spec["erlang_ports"]
    managed = [
        ("DISCO_USER", '"disco"'),
        ("DISCO_ROOT", '"%s"' % DISCO_ROOT),
        ("DISCO_MASTER_HOST", '"%s"' % master_hostname),
        ("DISCO_PORT", "%d" % spec["disco_port"]),
        ("DDFS_PUT_PORT", "%d" % ddfs_put_port(spec)),
        # slave:start runs this same command on every node over ssh
        ("DISCO_ERLANG", '"erl -kernel inet_dist_listen_min %d inet_dist_listen_max %d"'
         % (low, high)),
        ("DDFS_TAG_MIN_REPLICAS", "%d" % replicas_),
        ("DDFS_TAG_REPLICAS", "%d" % replicas_),
        ("DDFS_BLOB_REPLICAS", "%d" % replicas_),
    ]
    names = set(name for name, _ in managed)
    keep = []
    inside = False
    for line in (existing or "").splitlines():
        if line == BEGIN:
            inside = True
        elif line == END:
            inside = False
        elif not inside and _assigned(line) not in names:
            keep.append(line)
    present = set(_assigned(line) for line in keep)
    defaults = ["%s = %s" % (k, v) for k, v in INSTALL_DEFAULTS if k not in present]
    while keep and not keep[-1].strip():
        keep.pop()
    block = [BEGIN, "# cluster %s" % spec["cluster"]]
    block += defaults + ["%s = %s" % (k, v) for k, v in managed] + [END]
    return "\n".join(keep + block) + "\n"


def disco_installed(ctx):
    for path in DISCO_BINARIES:
        if os.access(ctx.path(path), os.X_OK):
            return path
    return None


def write_config(ctx, spec, rows):
    """Disco's hosts table, in the disco-owned DISCO_ROOT: never through a link there.

    Owned by disco: Disco's save_config_table rewrites this file as disco.
    """
    path = ctx.path(config_path(spec))
    return write_atomic(path, render_config(rows), mode=0o644, owner=ctx.disco_owner(path))


def write_settings(ctx, spec, master_hostname, joined):
    path = ctx.path(SETTINGS_FILE)
    text = render_settings(spec, master_hostname, joined, read_text(path))
    return write_atomic(path, text, mode=0o644)


MAX_REPLY = 64 * 1024  # Disco answers its ctrl calls with a short status line


def ctrl_post(path, value, port, host="127.0.0.1", timeout=10):
    """POST VALUE (as JSON) to Disco's API at PATH on the running master; (ok, text)."""
    return _ctrl(path, json.dumps(value).encode("ascii"), port, host, timeout)


def ctrl_get(path, port, host="127.0.0.1", timeout=10):
    """GET Disco's API at PATH on the running master; (ok, text)."""
    return _ctrl(path, None, port, host, timeout)


def _ctrl(path, body, port, host, timeout):
    from urllib.error import URLError
    from urllib.request import Request, urlopen
    request = Request("http://%s:%d%s" % (host, port, path), data=body,
                      headers={"Content-Type": "application/json"},
                      method="GET" if body is None else "POST")
    try:
        response = urlopen(request, timeout=timeout)
        try:
            reply = response.read(MAX_REPLY + 1)
        finally:
            response.close()
    except (URLError, OSError, ValueError) as exc:
        return False, str(exc)
    if len(reply) > MAX_REPLY:
        return False, "Disco's reply is over %d bytes: not read further, refused" % MAX_REPLY
    return True, reply.decode("utf-8", "replace")


def save_config_table(rows, port, host="127.0.0.1", timeout=10):
    """POST the hosts table to the running master; return (ok, text)."""
    return ctrl_post("/disco/ctrl/save_config_table", rows, port, host, timeout)


BLACKLIST_PATHS = ("/disco/ctrl/blacklist", "/disco/ctrl/gc_blacklist")


def blacklist(hostname, port, timeout=5):
    """No new tasks on HOSTNAME (Disco's blacklist) and DDFS moves its data away
    (gc_blacklist), as `invoke shrink` does; [(path, ok, text)]."""
    return [(path,) + ctrl_post(path, hostname, port, timeout=timeout)
            for path in BLACKLIST_PATHS]


GC_START_PATH = "/ddfs/ctrl/gc_start"


def start_gc(port, timeout=5):
    """A DDFS GC run now: only GC copies a gc_blacklisted node's blobs and tags away, and
    it runs once a day by itself (Disco's GC_INTERVAL). One line: "started" ("GC has
    started": a run already under way answers the same, and took the blacklist as it was
    when it began), "waits ..." (Disco's first 5 minutes, DDFS_GC_INITIAL_WAIT), or why
    the call failed."""
    ok, text = ctrl_get(GC_START_PATH, port, timeout=timeout)
    answer = text.strip().strip('"')
    if ok and answer == "GC has started":
        return "DDFS GC started"
    if ok and answer == "GC is waiting":
        return "DDFS GC waits for its first run (5 min after Disco started)"
    return "DDFS GC not started (%s)" % answer[:80]
