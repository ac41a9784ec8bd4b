"""Where the spec comes from; first hit wins.

1. --spec PATH (default /run/imagebake/spec.json: the Docker target bind-mounts
   a root-only file there); an explicit --spec that is missing is an error.
2. The agent's own persisted copy /var/lib/imagebake/spec.json (a reboot or a
   resumed run).
3. cloud-init's stored user data /var/lib/cloud/instance/user-data.txt, if it
   parses as our spec.
4. EC2 IMDS user data (IMDSv2, IMDSv1 fallback). When the metadata service
   cannot be reached (down, 5xx, timeout), it is asked again with backoff
   (IMDS_RETRY_DELAYS); when it still cannot, or when it answers with user
   data that is not a spec, the agent logs ONE line and exits 2 (SpecUnavailable,
   a SystemExit: no phase is recorded, no spec copy, key or cluster file written).

The metadata fence (only root reaches 169.254.169.254) is added at every start
whatever the source (phases.Agent.phase_spec) and, earlier, by the
imagebake-fence unit of provision/50-agent.sh.
"""

import os

from . import imds
from .fsutil import UnsafePath, ensure_file, read_text, write_atomic
from .spec import SpecError, dumps, loads

DEFAULT_SPEC = "/run/imagebake/spec.json"
PERSISTED = "/var/lib/imagebake/spec.json"
CLOUD_INIT = "/var/lib/cloud/instance/user-data.txt"
CLOUD_DIR = "/var/lib/cloud/instances"
# cloud-init's copies of the user data (the spec, with token and cookie)
CLOUD_COPIES = ("user-data.txt", "user-data.txt.i", "obj.pkl")
# Seconds between IMDS attempts while the metadata service cannot be reached (~1 min).
IMDS_RETRY_DELAYS = (1, 2, 4, 8, 15, 30)
EXIT_NO_SPEC = 2


class SpecUnavailable(SystemExit):
    """The last source (IMDS) had no usable spec: the line is logged, the agent exits 2.

    A SystemExit on purpose: it passes the phase bookkeeping (nothing is recorded or
    written) and the command line's error logging (one line, not two).
    """

    def __init__(self, message):
        SystemExit.__init__(self, EXIT_NO_SPEC)
        self.message = message


def find_spec(ctx, spec_path=None):
    """Return (spec, origin, notes). Raise SpecError when no source has one."""
    notes = {}
    candidates = []
    if spec_path:
        if not os.path.exists(ctx.path(spec_path)):
            raise SpecError("--spec %s does not exist" % spec_path)
        candidates.append(spec_path)
    else:
        candidates.append(DEFAULT_SPEC)
    candidates += [PERSISTED, CLOUD_INIT]
    errors = []
    for path in candidates:
        text = read_text(ctx.path(path))
        if text is None:
            continue
        try:
            return loads(text), path, notes
        except SpecError as exc:
            if path == spec_path:
                raise
            errors.append("%s: %s" % (path, exc))
    if ctx.imds_url:
        spec, origin = _spec_from_imds(ctx, notes, errors)
        if spec is not None:
            return spec, origin, notes
        message = "no cluster spec found (%s)" % "; ".join(errors)
        ctx.log.error("%s", message)
        raise SpecUnavailable(message)
    raise SpecError("no cluster spec found (%s)" % ("; ".join(errors) or "no source had one"))


def _spec_from_imds(ctx, notes, errors):
    """(spec, origin) from IMDS user data, or (None, None) with the reason in ERRORS.

    Unreachable (NoIMDS): retried after each of IMDS_RETRY_DELAYS. An answer that
    is not a spec (no user data, not our JSON) is final: asking again changes nothing.
    """
    delays = list(IMDS_RETRY_DELAYS)
    while True:
        try:
            data, version = imds.get_user_data(ctx.imds_url)
        except imds.NoIMDS as exc:
            if not delays:
                errors.append("imds: %s (after %d attempts)" % (exc, len(IMDS_RETRY_DELAYS) + 1))
                return None, None
            ctx.sleep(delays.pop(0))
            continue
        break
    notes["imds"] = version
    if version == "v1":
        notes["imds_fence"] = imds.fence_metadata(ctx)
    if data is None:
        errors.append("imds: no user data")
        return None, None
    try:
        return loads(data), "imds-%s" % version
    except SpecError as exc:
        errors.append("imds user data: %s" % exc)
        return None, None


def from_metadata(origin):
    """Whether the spec came from EC2's metadata service (or its copies: cloud-init's, and
    the one persisted for reboots, written only for those): then IMDS is there to ask."""
    return bool(origin) and (origin in (CLOUD_INIT, PERSISTED) or origin.startswith("imds"))


def persist_spec(ctx, spec, origin=None):
    """Keep secrets root-only on disk; return True when a copy was written.

    A spec that came from a file (--spec, /run/imagebake/spec.json: a root-only
    bind mount in Docker) is not copied anywhere: on Docker a copy would sit in
    the container's writable layer (docker commit/export/cp). From cloud-init or
    IMDS it is kept at /var/lib/imagebake/spec.json (0600, dir 0700) for reboots.
    cloud-init's own copies are made 0600 either way.
    """
    lock_cloud_init(ctx)
    if origin is not None and not (origin == CLOUD_INIT or origin.startswith("imds")):
        return False
    return write_atomic(ctx.path(PERSISTED), dumps(spec) + "\n", mode=0o600,
                        dir_mode=0o700)


def lock_cloud_init(ctx):
    """chmod 0600 every cloud-init copy of the user data (all instances)."""
    done = []
    dirs = [os.path.dirname(ctx.path(CLOUD_INIT))]
    base = ctx.path(CLOUD_DIR)
    if os.path.isdir(base):
        dirs += [os.path.join(base, d) for d in sorted(os.listdir(base))]
    for directory in dirs:
        for name in CLOUD_COPIES:
            path = os.path.join(directory, name)
            try:
                if ensure_file(path, 0o600):
                    done.append(path)
            except (UnsafePath, OSError) as exc:
                ctx.log.warning("cannot lock down %s: %s", path, exc)
    return done
