"""The QEMU binary and its accelerator (bake and qemu target alike).

Pick the accelerator: KVM when it really runs a guest, else TCG (software).

/dev/kvm may exist and open yet fail or crawl when a vCPU runs (nested
virtualisation, missing MSRs). The probe boots a 512-byte boot sector that makes
~262,000 VM exits, then writes one byte to QEMU's isa-debug-exit port; QEMU then
exits with (byte << 1) | 1. Only that exit code, within PROBE_TIMEOUT, proves a
usable vCPU. IMAGEBAKE_ACCEL=kvm|tcg overrides the probe.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

from ..errors import ImagebakeError

QEMU = "qemu-system-x86_64"
PROBE_BYTE = 0x2A
PROBE_EXIT = (PROBE_BYTE << 1) | 1
# The probe makes ~262,000 VM exits (port writes) before it reports: a working KVM does
# that in well under a second, TCG in ~0.3 s. Seen on nested hosts: /dev/kvm opens, a
# probe without exits passes now and then, and a real guest hangs before its boot loader;
# with the exits that KVM takes ~15 s. So a KVM slower than this is treated as broken.
PROBE_TIMEOUT = 3.0
BOOT_SECTOR = bytes([
    0xBA, 0x04, 0x00,  # mov dx, 4
    0xB9, 0xFF, 0xFF,  # outer: mov cx, 0xffff
    0xE6, 0x80,  # inner: out 0x80, al   (one VM exit each under KVM)
    0xE2, 0xFC,  # loop inner
    0x4A,  # dec dx
    0x75, 0xF6,  # jnz outer
    0xB0, PROBE_BYTE,  # mov al, 0x2a
    0xE6, 0xF4,  # out 0xf4, al  (isa-debug-exit: QEMU exits with (0x2a << 1) | 1)
    0xF4, 0xEB, 0xFE,  # hlt; jmp $
])


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    cpu: str  # -cpu model that works with it
    reason: str  # why this one (shown in logs and the benchmark)

    def argv(self) -> list[str]:
        return ["-accel", self.name if self.name == "kvm" else "tcg,thread=multi", "-cpu",
                self.cpu]


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if not path:
        raise ImagebakeError(f"{QEMU} not found: apt-get install qemu-system-x86 qemu-utils")
    return path


def _boot_sector() -> bytes:
    return BOOT_SECTOR + b"\0" * (510 - len(BOOT_SECTOR)) + b"\x55\xaa"


def probe(accel: str, cpu: str = "qemu64", timeout: float = PROBE_TIMEOUT) -> tuple[bool, str,
                                                                                      float]:
    """Boot the probe sector under ACCEL; (worked, detail, seconds)."""
    with tempfile.TemporaryDirectory(prefix="imagebake-probe-") as tmp:
        disk = os.path.join(tmp, "probe.img")
        with open(disk, "wb") as fh:
            fh.write(_boot_sector())
        argv = [qemu_binary(), "-accel", accel, "-cpu", cpu, "-M", "pc", "-m", "16",
                "-display", "none", "-nodefaults", "-no-reboot",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                "-drive", f"if=ide,format=raw,file={disk}"]
        started = time.monotonic()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            return False, f"probe guest did not finish in {timeout:.0f}s", timeout
        seconds = round(time.monotonic() - started, 2)
        if proc.returncode == PROBE_EXIT:
            return True, "probe guest ran", seconds
        lines = [ln for ln in proc.stderr.splitlines() if "warning" not in ln]
        return False, (lines[-1] if lines else f"exit code {proc.returncode}"), seconds


@functools.lru_cache(maxsize=1)
def detect() -> Accel:
    """KVM if /dev/kvm is usable and the probe runs, else TCG (cached per process)."""
    forced = os.environ.get("IMAGEBAKE_ACCEL", "").strip().lower()
    if forced == "tcg":
        return Accel("tcg", "max", "IMAGEBAKE_ACCEL=tcg")
    if forced not in ("", "kvm"):
        raise ImagebakeError(f"IMAGEBAKE_ACCEL must be kvm or tcg, not {forced!r}")
    if not os.path.exists("/dev/kvm"):
        why = "no /dev/kvm"
    elif not os.access("/dev/kvm", os.R_OK | os.W_OK):
        why = "/dev/kvm is not read-writable by this user"
    else:
        ok, why, seconds = probe("kvm")
        if ok:
            return Accel("kvm", "qemu64", f"KVM probe guest ran in {seconds}s")
        why = f"KVM probe failed: {why}"
    if forced == "kvm":
        raise ImagebakeError(f"IMAGEBAKE_ACCEL=kvm but {why}")
    return Accel("tcg", "max", f"{why}; using TCG")
