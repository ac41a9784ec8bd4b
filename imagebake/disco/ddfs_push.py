"""The in-cluster half of `invoke ddfs-load`: run on the master as disco, stdlib only
(Python 3.4+, so it runs on every image), fed a framed stream on stdin by the laptop
(imagebake.disco.ddfs_load) through the target's exec channel:

    python3 -c "$(cat ddfs_push.py)" TAG BLOB_BYTES WORKERS MODE    (MODE: blobs | chunks)

Frames: one kind byte, 8 bytes of big-endian length, the payload.
  F name      an input starts (NAME: DDFS-legal, the blob name's prefix)
  D bytes     its (decompressed) bytes
  E {json}    it ends: {"bytes": n}
  U {json}    an input the slaves download themselves: {"url", "name", "shown", "sha256"}
  Z {json}    everything was sent: store the tag ({"inputs": n})
Anything else, or the stream ending before Z (Ctrl-C, a dead laptop), aborts: the tag is
not touched. After Z the laptop keeps the stream open until the pusher ends, so its end
while the slaves still download (Ctrl-C) aborts too. Progress and the outcome are JSON
lines on stdout.

The local inputs, one after the other as one stream of lines (many small files make few
blobs), are cut into line-aligned blobs of about BLOB_BYTES (MODE blobs: the bytes as they
are, read by Disco's default map reader; MODE chunks: Disco's own chunk format,
disco.fileutils.Chunker, read with chain_reader). A blob is named
`NAME-<first 32 hex of its sha256>` (NAME: the first input's); one that the tag (or this
load) already has is not stored again, so loading the same input under the same tag twice
stores it once. Blobs
are stored with DDFS's push protocol (GET /ddfs/new_blob/NAME on the master gives one URL
per replica; HTTP PUT of the bytes to each), WORKERS at once, and only when every input
arrived and every blob is stored does ONE POST /ddfs/tag/TAG add the new blobs. A store
that fails is retried on other nodes (exclude=host) before the load fails.
"""

import hashlib
import http.client as httplib
import json
import os
import queue
import socket
import struct
import sys
import threading
import time
import urllib.error as urlerror
import urllib.parse as urlparse

MASTER = "http://127.0.0.1:%s" % os.environ.get("DISCO_PORT", "8989")
# how the slaves reach the master's Disco API (every node resolves `master`)
MASTER_NAME = os.environ.get("IMAGEBAKE_MASTER_URL",
                             "http://master:%s" % os.environ.get("DISCO_PORT", "8989"))
HEADER = struct.Struct(">cQ")
MAX_FRAME = 64 * 1024 * 1024
CHUNK = 1 << 20  # bytes per chunk of a blob's PUT
# replicas per blob; 0: DDFS's own DDFS_BLOB_REPLICAS
REPLICAS = int(os.environ.get("IMAGEBAKE_REPLICAS") or 0)
TRIES = 3


class Failed(Exception):
    """One line saying why the load failed (the tag was not changed)."""


def say(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def read_exact(stream, size):
    parts, left = [], size
    while left:
        part = stream.read(left)
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def frames(stream):
    """(kind, payload) pairs; ("", b"") when the stream ended before a Z frame."""
    while True:
        head = read_exact(stream, HEADER.size)
        if head is None:
            yield "", b""
            return
        kind, size = HEADER.unpack(head)
        if size > MAX_FRAME:
            raise Failed("a frame of %d bytes from the laptop: refused" % size)
        payload = read_exact(stream, size) if size else b""
        if payload is None:
            yield "", b""
            return
        yield kind.decode("ascii"), payload


def http(method, url, body=None, timeout=300):
    """(status, body bytes) of one request; status 0 with the error when none answered.
    A BODY given as a list of buffers (a blob) is sent in chunked transfer encoding."""
    parts = urlparse.urlsplit(url)
    conn = httplib.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        path = parts.path + ("?" + parts.query if parts.query else "")
        if isinstance(body, list):
            send_chunked(conn, method, path, body)
        else:
            conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, httplib.HTTPException) as exc:
        return 0, str(exc).encode()
    finally:
        conn.close()


def send_chunked(conn, method, path, views):
    """The request with VIEWS as its body in chunks of at most CHUNK bytes. A DDFS storage
    node (mochiweb) reads a body with a Content-Length 8 KiB at a time, one Erlang receive
    and one file write each; a chunk is received and written in one piece: a third of the
    node's CPU per byte (measured, issue 20)."""
    conn.putrequest(method, path, skip_accept_encoding=True)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for view in views:
        for start in range(0, len(view), CHUNK):
            part = view[start:start + CHUNK]
            conn.send(("%x\r\n" % len(part)).encode("ascii"))
            conn.send(part)
            conn.send(b"\r\n")
    conn.send(b"0\r\n\r\n")


def existing_blobs(tag):
    """Names (without the $timestamp) of the blobs TAG holds now; none when it is new."""
    status, body = http("GET", "%s/ddfs/tag/%s" % (MASTER, tag), timeout=60)
    if status == 404:
        return set()
    if status != 200:
        raise Failed("reading tag %s failed: HTTP %s %s" % (tag, status, body[:120]))
    names = set()
    for replicas in json.loads(body.decode("utf-8")).get("urls", []):
        for url in replicas[:1]:
            names.add(url.rsplit("/", 1)[-1].split("$", 1)[0])
    return names


def store(name, data, exclude=()):
    """Push DATA (a list of buffers) as blob NAME to every replica DDFS picks, all at once;
    its replica URLs."""
    params = ([("replicas", str(REPLICAS))] if REPLICAS else []) + (
        [("exclude", ",".join(sorted(exclude)))] if exclude else [])
    query = "?" + urlparse.urlencode(params, safe=",") if params else ""
    status, body = http("GET", "%s/ddfs/new_blob/%s%s" % (MASTER, name, query), timeout=60)
    if status != 200:
        raise Failed("DDFS gave no storage nodes for a blob: HTTP %s %s" % (
            status, body.decode("utf-8", "replace").strip()[:160]))
    urls, bad = json.loads(body.decode("utf-8")), set(exclude)
    replies = [None] * len(urls)

    def put(i):
        replies[i] = http("PUT", urls[i], data)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(len(urls))]
    for thread in threads:  # every replica at once
        thread.start()
    for thread in threads:
        thread.join()
    stored = []
    for url, (status, body) in zip(urls, replies):
        if status not in (200, 201):
            host = urlparse.urlsplit(url).hostname
            bad.add(host)
            return None, bad, "storing on %s failed: %s" % (
                host, ("HTTP %s" % status) if status else body.decode("utf-8", "replace"))
        stored.append(json.loads(body.decode("utf-8")))
    return stored, bad, ""


class Pusher:
    """WORKERS threads storing blobs; results kept in input order. The blobs TAG holds are
    read beside the first input's bytes (not before them): a blob is checked against them
    once they are known."""

    def __init__(self, tag, workers):
        self.tag, self.known, self.new_names = tag, set(), set()
        self.known_read = threading.Event()
        self.jobs = queue.Queue(maxsize=workers)
        self.results = {}
        self.lock = threading.Lock()
        self.error = ""
        self.stored_bytes = self.replica_bytes = self.skipped = 0
        self.replicas = 0
        self.threads = [threading.Thread(target=self.work) for _ in range(workers)]
        for thread in self.threads + [threading.Thread(target=self.read_known)]:
            thread.daemon = True
            thread.start()

    def read_known(self):
        try:
            self.known = existing_blobs(self.tag)
        except Failed as exc:
            self.error = self.error or str(exc)
        except Exception as exc:  # one line, never a traceback on the laptop
            self.error = self.error or "%s: %s" % (type(exc).__name__, exc)
        finally:
            self.known_read.set()

    def submit(self, index, prefix, data):
        """Store DATA (bytes, or a list of buffers: a blob of line_blobs) as blob INDEX."""
        if self.error:
            raise Failed(self.error)
        self.jobs.put((index, prefix, data if isinstance(data, list) else [memoryview(data)]))

    def fresh(self, name):
        """Whether blob NAME is neither in the tag nor stored by this load already."""
        self.known_read.wait()
        if self.error:
            raise Failed(self.error)
        with self.lock:
            if name in self.known or name in self.new_names:
                self.skipped += 1
                return False
            self.new_names.add(name)
            return True

    def work(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            index, prefix, data = job
            if self.error:
                continue
            digest = hashlib.sha256()
            for view in data:
                digest.update(view)
            name = "%s-%s" % (prefix, digest.hexdigest()[:32])
            size = sum(len(view) for view in data)
            try:
                if not self.fresh(name):
                    continue
                urls, bad, why = None, set(), ""
                for _ in range(TRIES):
                    try:
                        urls, bad, failed = store(name, data, bad)
                    except Failed as exc:  # no node left to try
                        raise Failed("%s; then %s" % (why, exc) if why else str(exc)) from None
                    if urls:
                        break
                    why = failed
                if not urls:
                    raise Failed(why + " (and on every other node DDFS offered)")
                with self.lock:
                    self.results[index] = urls
                    self.stored_bytes += size
                    self.replica_bytes += size * len(urls)
                    self.replicas = max(self.replicas, len(urls))
            except Failed as exc:
                self.error = self.error or str(exc)
            except Exception as exc:  # one line, never a traceback on the laptop
                self.error = self.error or "%s: %s" % (type(exc).__name__, exc)

    def finish(self):
        self.known_read.wait()
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()
        if self.error:
            raise Failed(self.error)
        return [self.results[i] for i in sorted(self.results)]


def line_blobs(pieces, size):
    """Cut the byte PIECES of one input into blobs of about SIZE bytes, each ending at a
    line end (the last one as the input ends). A blob is a list of memoryviews of the
    pieces: no byte is copied, only the newline near each cut is searched for."""
    parts, have = [], 0  # [piece, start, end] not yet in a blob; their length
    for piece in pieces:
        if not piece:
            continue
        parts.append([piece, 0, len(piece)])
        have += len(piece)
        while have >= size:
            cut = line_cut(parts, size)
            if cut is None:
                if have > 4 * size:
                    raise Failed("a line longer than %d bytes: raise --blob-mb" % (4 * size))
                break
            blob, parts = split_parts(parts, cut)
            have -= cut
            yield blob
    if have:
        yield [memoryview(piece)[start:end] for piece, start, end in parts]


def line_cut(parts, size):
    """The length of the longest head of PARTS that ends with a newline and has at most
    SIZE bytes; else of the shortest longer one; None when PARTS hold no newline."""
    begins, at = [], 0
    for _, start, end in parts:
        begins.append(at)
        at += end - start
    for index in range(len(parts) - 1, -1, -1):  # backwards from SIZE
        piece, start, end = parts[index]
        if begins[index] >= size:
            continue
        hit = piece.rfind(b"\n", start, min(end, start + size - begins[index]))
        if hit >= 0:
            return begins[index] + hit - start + 1
    for index, (piece, start, end) in enumerate(parts):  # forwards from SIZE
        if begins[index] + end - start <= size:
            continue
        hit = piece.find(b"\n", start + max(0, size - begins[index]), end)
        if hit >= 0:
            return begins[index] + hit - start + 1
    return None


def split_parts(parts, cut):
    """(memoryviews of the first CUT bytes of PARTS, the parts after them)."""
    head, rest, at = [], [], 0
    for piece, start, end in parts:
        if at + end - start <= cut:
            head.append(memoryview(piece)[start:end])
        elif at >= cut:
            rest.append([piece, start, end])
        else:
            middle = start + cut - at
            head.append(memoryview(piece)[start:middle])
            rest.append([piece, middle, end])
        at += end - start
    return head, rest


def chunk_blobs(pieces, size):
    """Disco's chunk format (ddfs chunk's), of the lines of PIECES, about SIZE bytes each."""
    from disco.fileutils import Chunker

    def lines():
        for blob in line_blobs(pieces, 1 << 20):
            for line in b"".join(blob).splitlines(True):
                yield line

    return Chunker(chunk_size=size).chunks(lines())


class Load:
    def __init__(self, tag, blob_bytes, workers, mode):
        self.tag, self.blob_bytes, self.mode = tag, blob_bytes, mode
        self.pusher = Pusher(tag, workers)
        self.received = 0
        self.blobs = 0
        self.urls = []
        self.remote = [0, 0, 0, 0]  # received, stored, written, blobs on the slaves
        self.remote_skipped = self.remote_replicas = 0
        self.gone = threading.Event()  # the laptop's stream ended after Z (run)
        self.last = 0.0

    def progress(self, force=False):
        now = time.time()
        if force or now - self.last >= 0.5:
            self.last = now
            say(received=self.received + self.remote[0], stored=self.pusher.stored_bytes
                + self.remote[1], written=self.pusher.replica_bytes + self.remote[2],
                blobs=self.blobs + self.remote[3])

    def add(self, prefix, data):
        self.blobs += 1
        self.pusher.submit(self.blobs, prefix, data)

    def pieces(self, stream):
        for kind, payload in stream:
            if kind == "D":
                self.received += len(payload)
                self.progress()
                yield payload
            elif kind == "E":
                return
            else:
                raise Failed("the stream from the laptop ended in the middle of an input "
                             "(interrupted?)")

    def cut(self, pieces):
        return (chunk_blobs if self.mode == "chunks" else line_blobs)(pieces, self.blob_bytes)

    def run(self, stream, raw=None):
        """Local inputs first (F frames, their lines cut into blobs as one stream), then the
        inputs the slaves fetch (U), then Z: commit. After Z the laptop keeps RAW (the
        stream under STREAM) open until the load ends: its end then means the laptop went
        away (Ctrl-C), and the load stops before the tag changes."""
        self.inputs, self.prefix, self.after = 0, None, ("", b"")
        for data in self.cut(self.local(stream)):
            self.add(self.prefix, data)
        kind, payload = self.after
        while kind == "U":
            self.urls.append(json.loads(payload.decode("utf-8")))
            self.inputs += 1
            kind, payload = next(stream, ("", b""))
        if kind == "Z":
            if raw is not None:
                watcher = threading.Thread(target=watch_end, args=(raw, self.gone))
                watcher.daemon = True
                watcher.start()
            fetched = fetch_on_slaves(self) if self.urls else []
            return self.commit(self.inputs, fetched)
        raise Failed("the stream from the laptop ended early (interrupted?)")

    def local(self, stream):
        """The bytes of every local input one after the other, so that many small files
        make few blobs (a newline put between two inputs when the first does not end with
        one: lines never merge), until the first frame that is not an input. Blobs are named
        after the first input."""
        for kind, payload in stream:
            if kind != "F":
                self.after = (kind, payload)
                return
            self.prefix = self.prefix or payload.decode("utf-8")
            last = b"\n"
            for piece in self.pieces(stream):
                last = piece[-1:]
                yield piece
            if last != b"\n":
                yield b"\n"
            self.inputs += 1

    def commit(self, inputs, fetched=()):
        urls = self.pusher.finish() + list(fetched)
        self.progress(force=True)
        if self.gone.is_set():
            raise Failed(GONE)
        if urls:
            status, body = http("POST", "%s/ddfs/tag/%s" % (MASTER, self.tag),
                                json.dumps(urls).encode("utf-8"), timeout=120)
            if status != 200:
                raise Failed("updating tag %s failed: HTTP %s %s" % (
                    self.tag, status, body.decode("utf-8", "replace")[:160]))
        say(done=True, inputs=inputs, blobs=self.blobs + self.remote[3], new=len(urls),
            skipped=self.pusher.skipped + self.remote_skipped,
            replicas=max(self.pusher.replicas, self.remote_replicas),
            bytes=self.received + self.remote[0],
            written=self.pusher.replica_bytes + self.remote[2])


GONE = "the laptop's stream ended before the load did (interrupted?)"


def watch_end(raw, gone):
    """Set GONE when RAW (the laptop's stream, after Z) ends."""
    try:
        while raw.read(1 << 16):
            pass
    except (OSError, ValueError):
        pass
    gone.set()


# ---------------------------------------------------------------- inputs the slaves fetch
MAX_UNPACKED = 100 * 10 ** 9
S_IFMT, S_IFLNK = 0o170000, 0o120000


def config_hosts():
    """The hosts in Disco's table (the slaves; the master too when it has workers)."""
    status, body = http("GET", "%s/disco/ctrl/load_config_table" % MASTER, timeout=30)
    if status != 200:
        raise Failed("reading Disco's hosts failed: HTTP %s" % status)
    me = socket.gethostname().split(".")[0]
    hosts = [str(row[0]) for row in json.loads(body.decode("utf-8"))]
    return [h for h in hosts if h != me] or hosts


def own_code():
    """This program's source: it was given with -c (Linux: /proc/self/cmdline)."""
    with open("/proc/self/cmdline", "rb") as fh:
        args = fh.read().split(b"\0")
    return args[args.index(b"-c") + 1].decode("utf-8")


def fetch_on_slaves(load):
    """Each slave downloads its share of LOAD.urls (round robin), over ssh as disco (the
    access Disco itself uses), stores blobs and reports their URLs; every URL list, in
    input order. The first failure fails the load."""
    import subprocess

    hosts = config_hosts()
    shares = {}
    for index, item in enumerate(load.urls):
        shares.setdefault(hosts[index % len(hosts)], []).append((index, item))
    code = own_code()
    procs = {}
    for host, items in shares.items():
        remote = "IMAGEBAKE_REPLICAS=%d python3 -c %s fetch %s %d %d %s %s" % (
            REPLICAS, quote(code), load.tag, load.blob_bytes, 2, load.mode, quote(MASTER_NAME))
        procs[host] = subprocess.Popen(
            ["ssh", "-o", "BatchMode=yes", host, remote], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs[host].stdin.write(json.dumps([i for _, i in items]).encode("utf-8"))
        procs[host].stdin.close()
    results, errors, lock = {}, [], threading.Lock()
    seen = {}

    def follow(host):
        proc = procs[host]
        for raw in iter(proc.stdout.readline, b""):
            try:
                said = json.loads(raw.decode("utf-8"))
            except ValueError:
                continue
            with lock:
                if "error" in said:
                    errors.append("%s (on %s)" % (said["error"], host))
                elif "fetched" in said:
                    results[host] = said
                else:
                    seen[host] = said
                    load.remote[:] = [sum(v.get(k, 0) for v in seen.values())
                                      for k in ("received", "stored", "written", "blobs")]
        proc.wait()
        if proc.returncode and not errors:
            with lock:
                errors.append("fetching on %s failed: %s" % (
                    host, proc.stderr.read().decode("utf-8", "replace").strip()[-200:]
                    or "exit %s" % proc.returncode))

    threads = [threading.Thread(target=follow, args=(h,)) for h in procs]
    for thread in threads:
        thread.daemon = True
        thread.start()
    while any(t.is_alive() for t in threads):
        load.progress()
        if errors or load.gone.is_set():
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
        time.sleep(0.3)
    if load.gone.is_set():
        raise Failed(GONE)
    if errors:
        raise Failed(errors[0])
    urls = []
    for host in shares:
        said = results.get(host) or {}
        urls += said.get("fetched", [])
        load.remote_skipped += int(said.get("skipped", 0))
        load.remote_replicas = max(load.remote_replicas, int(said.get("replicas", 0)))
    for key, field in enumerate(("received", "stored", "written", "blobs")):
        load.remote[key] = sum(int(r.get(field, 0)) for r in results.values())
    return urls


def quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


def download(item):
    """The response for ITEM's URL; one line naming the URL and the HTTP status when the
    server refuses."""
    import urllib.request

    try:
        return urllib.request.urlopen(item["url"], timeout=120)
    except urlerror.HTTPError as exc:
        raise Failed("download of %s failed: HTTP %s %s" % (item["shown"], exc.code,
                                                             exc.reason)) from None
    except (urlerror.URLError, OSError) as exc:
        raise Failed("download of %s failed: %s" % (
            item["shown"], getattr(exc, "reason", exc))) from None


class Hashed:
    """Reads RAW, hashing and counting every byte (the download as served)."""

    def __init__(self, raw, item):
        self.raw, self.item, self.sha = raw, item, hashlib.sha256()

    def read(self, size=-1):
        try:
            block = self.raw.read(size)
        except (OSError, httplib.HTTPException) as exc:
            raise Failed("download of %s broke off: %s" % (self.item["shown"], exc)) from None
        self.sha.update(block)
        return block

    def check(self):
        want = self.item.get("sha256")
        if want and self.sha.hexdigest() != want:
            raise Failed("checksum mismatch for %s: sha256 %s, expected %s" % (
                self.item["shown"], self.sha.hexdigest(), want))


def member_ok(info, shown):
    """The checks ddfs-load makes on the laptop (issue 21 N2), for a zip the slave got."""
    name = info.filename.replace("\\", "/")
    depth = 0
    for part in name.split("/"):
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            break
    first = name.split("/")[0]
    if name.startswith("/") or ":" in first or depth < 0:
        raise Failed("zip member %r of %s resolves outside its folder: refused" % (
            info.filename, shown))
    if (info.external_attr >> 16) & S_IFMT == S_IFLNK:
        raise Failed("zip member %r of %s is a symlink: refused" % (info.filename, shown))
    return not name.endswith("/")


def url_parts(item, budget):
    """(name, stream) of the unpacked parts of ITEM, and the Hashed download."""
    import bz2
    import gzip
    import tempfile
    import zipfile

    path = urlparse.urlsplit(item["url"]).path
    raw = Hashed(download(item), item)
    if path.endswith(".gz"):
        return [(item["name"], gzip.GzipFile(fileobj=raw))], raw
    if path.endswith(".bz2"):
        return [(item["name"], bz2.BZ2File(raw))], raw
    if path.endswith(".zip"):  # needs seeking: an anonymous file, gone when closed
        spool = tempfile.TemporaryFile()
        while True:
            block = raw.read(1 << 20)
            if not block:
                break
            spool.write(block)
        raw.check()
        archive = zipfile.ZipFile(spool)
        infos = [i for i in archive.infolist() if member_ok(i, item["shown"])]
        if sum(i.file_size for i in infos) > budget[0]:
            raise Failed("%s unpacks to more than %d bytes: refused" % (item["shown"],
                                                                       MAX_UNPACKED))
        return [(safe_name(i.filename), archive.open(i)) for i in infos], None
    return [(item["name"], raw)], raw


def safe_name(name):
    base = name.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    legal = ":@-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(c if c in legal else "_" for c in base)[:100] or "input"


def fetch(argv):
    """On a slave: download each item given on stdin, store its blobs, report their URLs."""
    global MASTER
    tag, blob_bytes, workers, mode, master = argv[2], int(argv[3]), int(argv[4]), argv[5], \
        argv[6]
    MASTER = master
    items = json.loads(sys.stdin.read())
    load = Load(tag, blob_bytes, workers, mode)
    budget = [MAX_UNPACKED]

    def pieces(stream, shown):
        while True:
            try:
                block = stream.read(1 << 20)
            except (OSError, EOFError, ValueError) as exc:
                raise Failed("unpacking %s failed: %s" % (shown, exc)) from None
            if not block:
                return
            budget[0] -= len(block)
            if budget[0] < 0:
                raise Failed("%s unpacks to more than %d bytes: refused" % (shown,
                                                                            MAX_UNPACKED))
            load.received += len(block)
            load.progress()
            yield block

    for item in items:
        parts, raw = url_parts(item, budget)
        for name, stream in parts:
            for data in load.cut(pieces(stream, item["shown"])):
                load.add(name, data)
        if raw is not None:
            while raw.read(1 << 20):  # a compressed stream may end before its download
                pass
            raw.check()
    urls = load.pusher.finish()
    load.progress(force=True)
    say(fetched=urls, received=load.received, stored=load.pusher.stored_bytes,
        written=load.pusher.replica_bytes, blobs=load.blobs, skipped=load.pusher.skipped,
        replicas=load.pusher.replicas)


def main(argv):
    socket.setdefaulttimeout(300)
    try:
        if argv[1] == "fetch":
            fetch(argv)
            return 0
        tag, blob_bytes, workers, mode = argv[1], int(argv[2]), int(argv[3]), argv[4]
        Load(tag, blob_bytes, workers, mode).run(frames(sys.stdin.buffer), sys.stdin.buffer)
    except Failed as exc:
        say(error=str(exc))
        return 1
    except (OSError, ValueError, urlerror.URLError) as exc:
        say(error="%s: %s" % (type(exc).__name__, exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
