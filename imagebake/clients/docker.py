"""The few Docker CLI calls the bake and the docker target need, with one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess

from ..errors import ImagebakeError


def docker(*args: str, check: bool = True, timeout: float = 120, input: str | None = None) -> str:
    """Run `docker ARGS...`, return stdout; on failure raise one line (or '' if not check)."""
    if shutil.which("docker") is None:
        raise ImagebakeError("docker is not installed (apt-get install docker.io)")
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, input=input
    )
    if proc.returncode != 0:
        if not check:
            return ""
        err = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ImagebakeError(f"docker {args[0]} failed: {err}")
    return proc.stdout


def require_daemon() -> None:
    if shutil.which("docker") is None:
        raise ImagebakeError("docker is not installed (apt-get install docker.io)")
    proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ImagebakeError("the Docker daemon is not running (start it: `dockerd &` or "
                             "`systemctl start docker`)")


def image_exists(ref: str) -> bool:
    return bool(docker("image", "inspect", "--format", "{{.Id}}", ref, check=False).strip())


def ids(kind: str, label: str) -> list[str]:
    """Ids of containers/networks/volumes carrying LABEL (k=v)."""
    if kind == "container":
        out = docker("ps", "-aq", "--filter", f"label={label}")
    else:
        out = docker(kind, "ls", "-q", "--filter", f"label={label}")
    return out.split()


def inspect(*refs: str) -> list[dict]:
    if not refs:
        return []
    out = docker("inspect", *refs, check=False)
    return json.loads(out) if out.strip() else []


def used_subnets() -> list[str]:
    nets = docker("network", "ls", "-q").split()
    subnets = []
    for net in inspect(*nets) if nets else []:
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet"):
                subnets.append(cfg["Subnet"])
    return subnets
