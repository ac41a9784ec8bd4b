"""One QEMU virtual machine: overlay disk, argv, start (daemonized), stop, console."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import ImagebakeError
from . import kvm, seed

BOOT_MARK = "IMAGEBAKE-BOOT-OK"


def make_overlay(base: Path, path: Path) -> Path:
    """A copy-on-write qcow2 on top of BASE (which is never written)."""
    proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                           str(Path(base).resolve()), str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImagebakeError(f"qemu-img create {path} failed: {proc.stderr.strip()}")
    return path


def argv(name: str, disk: Path, seed_iso: Path | None, accel: kvm.Accel, memory_mib: int,
         cpus: int, console: Path, nics: list[str], pidfile: Path | None = None,
         monitor: Path | None = None, daemonize: bool = False) -> list[str]:
    """QEMU command line; NICS are -netdev specs whose id is n0, n1, ... (virtio NICs)."""
    out = [kvm.qemu_binary(), "-name", name, *accel.argv(), "-M", "pc", "-m", str(memory_mib),
           "-smp", str(cpus), "-nodefaults", "-no-user-config", "-display", "none",
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
    return out


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


def console_text(console: Path) -> str:
    try:
        return Path(console).read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def boot_check(image: Path | str, timeout: float = 300.0, memory_mib: int = 512) -> dict:
    """Boot IMAGE once (overlay, throw-away) with a trivial NoCloud user data that writes a
    mark to the serial console and powers off; returns timings. Raises if it never shows."""
    accel = kvm.detect()
    with tempfile.TemporaryDirectory(prefix="imagebake-bootcheck-") as tmp:
        work = Path(tmp)
        disk = make_overlay(Path(image), work / "disk.qcow2")
        user_data = ("#cloud-config\n"
                     f"bootcmd:\n  - echo {BOOT_MARK}-bootcmd > /dev/ttyS0\n"
                     f"runcmd:\n  - echo {BOOT_MARK} > /dev/ttyS0\n"
                     "power_state:\n  mode: poweroff\n  timeout: 30\n  condition: true\n")
        iso = seed.make_iso(work / "seed.iso", user_data, seed.meta_data("bootcheck", "probe"))
        console = work / "console.log"
        cmd = argv("imagebake-bootcheck", disk, iso, accel, memory_mib, 1, console,
                   ["user,restrict=on"]) + ["-no-reboot"]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen = None
        try:
            while time.monotonic() - started < timeout:
                if seen is None and f"{BOOT_MARK}\n" in console_text(console).replace("\r", ""):
                    seen = time.monotonic() - started
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        text = console_text(console)
        if seen is None:
            tail = "\n".join(text.splitlines()[-25:])
            raise ImagebakeError(f"{image} did not run its NoCloud user data within "
                                 f"{timeout:.0f}s ({accel.name}); console tail:\n{tail}")
        return {"accel": accel.name, "user_data_seconds": round(seen, 1),
                "poweroff_seconds": round(time.monotonic() - started, 1),
                "powered_off": proc.returncode == 0}
