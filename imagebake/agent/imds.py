"""EC2 instance metadata (IMDS): user data with the IMDSv2 token dance.

IMDSv1 is used only when the token endpoint answers 404/405 or refuses the
connection; a timeout means "no IMDS here" (Docker, QEMU).
"""

import errno
import socket
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

TOKEN_PATH = "/latest/api/token"
USER_DATA_PATH = "/latest/user-data"
TOKEN_TTL = "21600"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
METADATA_ADDRESS = "169.254.169.254"


class NoIMDS(Exception):
    pass


def _refused(exc):
    reason = getattr(exc, "reason", exc)
    return (isinstance(reason, ConnectionRefusedError)
            or getattr(reason, "errno", None) == errno.ECONNREFUSED)


MAX_ANSWER = 64 * 1024  # EC2 user data is at most 16 KiB


def _open(request, timeout):
    """The answer's bytes, at most MAX_ANSWER (a longer answer is refused: NoIMDS)."""
    response = urlopen(request, timeout=timeout)
    try:
        data = response.read(MAX_ANSWER + 1)
    finally:
        response.close()
    if len(data) > MAX_ANSWER:
        raise NoIMDS("the metadata service answered over %d bytes: refused" % MAX_ANSWER)
    return data


def get_token(base, timeout):
    """IMDSv2 session token, or None when only IMDSv1 is available."""
    request = Request(base + TOKEN_PATH, data=b"", method="PUT",
                      headers={"X-aws-ec2-metadata-token-ttl-seconds": TOKEN_TTL})
    try:
        return _open(request, timeout).decode("ascii").strip()
    except HTTPError as exc:
        if exc.code in (404, 405):
            return None
        raise NoIMDS("token endpoint answered HTTP %d" % exc.code) from None
    except (URLError, OSError, socket.timeout) as exc:
        if _refused(exc):
            return None
        raise NoIMDS("no metadata service: %s" % getattr(exc, "reason", exc)) from None


def get_user_data(base="http://" + METADATA_ADDRESS, timeout=2.0):
    """Return (user_data_bytes or None, 'v2'|'v1'). Raise NoIMDS when unreachable."""
    base = base.rstrip("/")
    token = get_token(base, timeout)
    headers = {TOKEN_HEADER: token} if token else {}
    version = "v2" if token else "v1"
    try:
        return _open(Request(base + USER_DATA_PATH, headers=headers), timeout), version
    except HTTPError as exc:
        if exc.code == 404:
            return None, version
        raise NoIMDS("user-data answered HTTP %d" % exc.code) from None
    except (URLError, OSError, socket.timeout) as exc:
        raise NoIMDS("user-data: %s" % getattr(exc, "reason", exc)) from None


LOCAL_IPV4_PATH = "/latest/meta-data/local-ipv4"


def get_metadata(base, path, timeout=2.0):
    """One metadata item (text) with the IMDSv2 token when available; None if absent."""
    base = base.rstrip("/")
    token = get_token(base, timeout)
    headers = {TOKEN_HEADER: token} if token else {}
    try:
        return _open(Request(base + path, headers=headers), timeout).decode("ascii").strip()
    except HTTPError as exc:
        if exc.code == 404:
            return None
        raise NoIMDS("%s answered HTTP %d" % (path, exc.code)) from None
    except (URLError, OSError, socket.timeout, UnicodeDecodeError) as exc:
        raise NoIMDS("%s: %s" % (path, getattr(exc, "reason", exc))) from None


FENCE_RULE = ["OUTPUT", "-d", METADATA_ADDRESS, "-m", "owner", "!", "--uid-owner", "0",
              "-j", "REJECT"]


def fence_metadata(ctx):
    """Only root may reach IMDS: any local user can get an IMDSv2 token too. Idempotent.

    The agent adds it at every start; provision/50-agent.sh installs the same
    rule in a unit that runs before the network comes up.
    """
    if ctx.runner.which("iptables") is None:
        return "skipped: iptables absent"
    if ctx.runner.run(["iptables", "-C"] + FENCE_RULE).ok:
        return "present"
    result = ctx.runner.run(["iptables", "-A"] + FENCE_RULE)
    if result.ok:
        return "added"
    return "failed: %s" % result.out.strip()[-200:]
