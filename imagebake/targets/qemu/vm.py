"""One QEMU virtual machine: where its files live, overlay disk, argv, stop, console."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from ... import state
from ...clients import qemu as qemu_client
from ...errors import ImagebakeError


def vm_name(cluster: str, host: str) -> str:
    return f"imagebake-{cluster}-{host}"


def cluster_dir(name: str) -> Path:
    return state.state_dir() / "clusters" / f"{name}.d"


def paths(record: dict, host: str) -> dict[str, Path]:
    """HOST's files in the cluster's folder: disk overlay, seed, pid, console, monitor."""
    d = Path(record["dir"])
    return {"disk": d / f"{host}.qcow2", "seed": d / f"{host}-seed.iso",
            "pid": d / f"{host}.pid", "console": d / f"{host}.console.log",
            "monitor": d / f"{host}.monitor"}


def make_overlay(base: Path, path: Path) -> Path:
    """A copy-on-write qcow2 on top of BASE (which is never written)."""
    proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                           str(Path(base).resolve()), str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImagebakeError(f"qemu-img create {path} failed: {proc.stderr.strip()}")
    return path


def argv(name: str, disk: Path, seed_iso: Path | None, accel: qemu_client.Accel, memory_mib: int,
         cpus: int, console: Path, nics: list[str], pidfile: Path | None = None,
         monitor: Path | None = None, daemonize: bool = False,
         extra: list[str] | None = None) -> list[str]:
    """QEMU command line; NICS are -netdev specs whose id is n0, n1, ... (virtio NICs)."""
    out = [qemu_client.qemu_binary(), "-name", name, *accel.argv(), "-M", "pc",
           "-m", str(memory_mib), "-smp", str(cpus), "-nodefaults", "-no-user-config",
           "-display", "none",
           "-drive", f"file={disk},if=virtio,format=qcow2,discard=unmap",
           "-device", "virtio-rng-pci", "-serial", f"file:{console}"]
    if seed_iso is not None:
        out += ["-drive", f"file={seed_iso},if=virtio,format=raw,readonly=on"]
    for index, spec in enumerate(nics):
        netdev, _, mac = spec.partition("|")
        device = f"virtio-net-pci,netdev=n{index}"
        if mac:
            device += f",mac={mac}"
        out += ["-netdev", f"{netdev},id=n{index}", "-device", device]
    if pidfile is not None:
        out += ["-pidfile", str(pidfile)]
    if monitor is not None:
        out += ["-monitor", f"unix:{monitor},server,nowait"]
    if daemonize:
        out.append("-daemonize")
    return out + list(extra or [])


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(Path(pidfile).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # Only our QEMU: the pid must still run qemu with this pidfile.
    return pid if b"qemu" in cmdline and str(pidfile).encode() in cmdline else None


def stop(pidfile: Path, timeout: float = 10.0) -> bool:
    """Stop the QEMU of PIDFILE (TERM, then KILL); True when one was running."""
    pid = read_pid(pidfile)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True

