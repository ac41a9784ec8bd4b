"""Where the spec comes from; first hit wins.

1. --spec PATH (default /run/imagebake/spec.json: the Docker target bind-mounts
   a root-only file there); an explicit --spec that is missing is an error.
2. The agent's own persisted copy /var/lib/imagebake/spec.json (a reboot or a
   resumed run).
3. cloud-init's stored user data /var/lib/cloud/instance/user-data.txt, if it
   parses as our spec.
4. EC2 IMDS user data (IMDSv2, IMDSv1 fallback; v1 => metadata fenced to root).
"""

import os

from . import imds
from .fsutil import read_text, write_atomic
from .spec import SpecError, dumps, loads

DEFAULT_SPEC = "/run/imagebake/spec.json"
PERSISTED = "/var/lib/imagebake/spec.json"
CLOUD_INIT = "/var/lib/cloud/instance/user-data.txt"


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
        try:
            data, version = imds.get_user_data(ctx.imds_url)
        except imds.NoIMDS as exc:
            errors.append("imds: %s" % exc)
        else:
            notes["imds"] = version
            if version == "v1":
                notes["imds_fence"] = imds.fence_metadata(ctx)
            if data is None:
                errors.append("imds: no user data")
            else:
                try:
                    return loads(data), "imds-%s" % version, notes
                except SpecError as exc:
                    errors.append("imds user data: %s" % exc)
    raise SpecError("no cluster spec found (%s)" % ("; ".join(errors) or "no source had one"))


def persist_spec(ctx, spec):
    """Keep the spec root-only at /var/lib/imagebake/spec.json; lock down cloud-init's copy."""
    changed = write_atomic(ctx.path(PERSISTED), dumps(spec) + "\n", mode=0o600,
                           dir_mode=0o700)
    cloud = ctx.path(CLOUD_INIT)
    if os.path.exists(cloud):
        os.chmod(cloud, 0o600)
    return changed
