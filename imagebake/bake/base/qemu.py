"""The QEMU base image: a bootable Debian 12 qcow2 built offline from Debian's mirror.

debootstrap writes the root file system straight into an ext4 partition of a
raw disk (loop device), extlinux makes it bootable by itself (MBR + extlinux, as
Packer's qemu builder boots a plain disk image), then qemu-img turns it into
build/base/debian12.qcow2. The image carries systemd, cloud-init (datasource
identified by ds-identify: NoCloud seed or EC2 SMBIOS), OpenSSH and the packages of the Docker
base. Idempotent: a sidecar file holds the recipe hash; the same hash means the
image is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ...errors import ImagebakeError

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
OUTPUT = Path("build/base/debian12.qcow2")
DISK_SIZE_MIB = 4096
PART_START_SECTOR = 2048  # 1 MiB
RECIPE_VERSION = "5"

# The Docker base's packages (provision/base/docker-base.sh PACKAGES) ...
DOCKER_BASE_PACKAGES = (
    "erlang-nox,erlang-dev,openssh-server,openssh-client,dnsmasq,python3,python-is-python3,"
    "make,git,ca-certificates,iproute2,procps,iputils-ping,netbase,sudo,cron,iptables"
)
# ... plus what a machine that boots by itself needs.
VM_PACKAGES = (
    "linux-image-cloud-amd64,systemd-sysv,udev,dbus,cloud-init,ifupdown,isc-dhcp-client,"
    "kmod,initramfs-tools,less,"
    # debootstrap's resolver skips virtual packages: cryptography needs this one spelled out.
    "python3-cffi-backend"
)
KERNEL_ARGS = "console=ttyS0,115200 net.ifnames=0 ipv6.disable=1 quiet"

EXTLINUX_CONF = """\
DEFAULT debian
PROMPT 0
TIMEOUT 0
LABEL debian
  LINUX /boot/{kernel}
  INITRD /boot/{initrd}
  APPEND root=UUID={uuid} ro {args}
"""

# No datasource_list: cloud-init's ds-identify picks the datasource from what the machine
# shows, as on a stock cloud image (EC2 AMIs included): NoCloud when a disk labelled cidata
# is attached (the bake), Ec2 when the SMBIOS system UUID and serial both start with "ec2"
# (the launched VMs, whose metadata service is emulated). ds-identify's default policy
# (maybe=none) probes no metadata address unless the platform was identified.
CLOUD_CFG = """\
# imagebake: the datasource is identified by ds-identify (NoCloud seed at bake, Ec2 at launch).
datasource:
  NoCloud:
    fs_label: cidata
manage_etc_hosts: false
apt_preserve_sources_list: true
package_update: false
package_upgrade: false
"""

INTERFACES = """\
# cloud-init writes the interface configuration into interfaces.d/.
auto lo
iface lo inet loopback

source /etc/network/interfaces.d/*
"""

# Periodic apt runs would talk to the package servers from a booted cluster.
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service",
                "apt-daily-upgrade.service", "e2scrub_all.timer", "fstrim.timer")


def _info(msg: str) -> None:
    print(f"[qemu-base] {msg}", flush=True)


def mirror() -> str:
    return (os.environ.get("IMAGEBAKE_DEBIAN_MIRROR") or os.environ.get("IMAGEBAKE_MIRROR")
            or DEFAULT_MIRROR)


def recipe_hash(mirror_url: str) -> str:
    parts = [RECIPE_VERSION, SUITE, mirror_url, DOCKER_BASE_PACKAGES, VM_PACKAGES, KERNEL_ARGS,
             EXTLINUX_CONF, CLOUD_CFG, INTERFACES, ",".join(MASKED_UNITS), str(DISK_SIZE_MIB)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _stamp_path(output: Path) -> Path:
    return output.with_suffix(".json")


def current(output: Path = OUTPUT) -> dict | None:
    """The sidecar record of an existing image (recipe hash, build time), if any."""
    stamp = _stamp_path(output)
    if not (output.exists() and stamp.exists()):
        return None
    try:
        return json.loads(stamp.read_text())
    except ValueError:
        return None


def _run(argv: list[str], what: str, log: Path | None = None, **kw) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    if log is not None:
        with open(log, "a") as fh:
            fh.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ImagebakeError(f"{what} failed (exit {proc.returncode}): {tail}")
    return proc.stdout


def verify_system() -> None:
    if os.geteuid() != 0:
        raise ImagebakeError("building the QEMU base image needs root (debootstrap, losetup)")
    needed = {"debootstrap": "debootstrap", "qemu-img": "qemu-utils", "sfdisk": "fdisk",
              "losetup": "mount", "mkfs.ext4": "e2fsprogs", "extlinux": "extlinux",
              "blkid": "util-linux"}
    missing = sorted({pkg for tool, pkg in needed.items() if not shutil.which(tool)})
    if not Path("/usr/lib/EXTLINUX/mbr.bin").exists():
        missing.append("extlinux")
    if missing:
        raise ImagebakeError(f"missing tools: apt-get install -y {' '.join(sorted(set(missing)))}")


def build(force: bool = False, output: Path | str = OUTPUT) -> str:
    """Build (or keep) the base qcow2; returns its path."""
    output = Path(output)
    url = mirror()
    want = recipe_hash(url)
    have = current(output)
    if have and have.get("recipe") == want and not force:
        _info(f"{output} is up to date (recipe {want}); nothing to do")
        return str(output)
    verify_system()
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="imagebake-qemu-base.", dir="/var/tmp"))
    try:
        raw = work / "disk.raw"
        _make_rootfs_disk(raw, work, url)
        tmp_out = output.with_name(output.name + ".tmp")
        _info(f"converting to {output}")
        _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp_out)],
             "qemu-img convert")
        os.replace(tmp_out, output)
        _stamp_path(output).write_text(json.dumps({
            "recipe": want, "suite": SUITE, "mirror": url,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.time() - started, 1),
        }, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _info(f"built {output} (recipe {want}) in {time.time() - started:.0f}s")
    return str(output)


def _make_rootfs_disk(raw: Path, work: Path, url: str) -> None:
    log = work / "build.log"
    with open(raw, "wb") as fh:
        fh.truncate(DISK_SIZE_MIB * 1024 * 1024)
    _run(["sfdisk", "--quiet", str(raw)], "sfdisk",
         input=f"label: dos\nstart={PART_START_SECTOR}, type=83, bootable\n")
    offset = PART_START_SECTOR * 512
    size = DISK_SIZE_MIB * 1024 * 1024 - offset
    loop = _run(["losetup", "--find", "--show", "--offset", str(offset), "--sizelimit",
                 str(size), str(raw)], "losetup").strip()
    mnt = work / "mnt"
    mnt.mkdir()
    mounted: list[Path] = []
    try:
        # extlinux reads ext4 but not the 64bit/csum-seed/orphan_file features.
        _run(["mkfs.ext4", "-q", "-L", "rootfs", "-O", "^64bit,^metadata_csum_seed,^orphan_file",
              loop], "mkfs.ext4")
        uuid = _run(["blkid", "-s", "UUID", "-o", "value", loop], "blkid").strip()
        _run(["mount", loop, str(mnt)], "mount")
        mounted.append(mnt)
        _info(f"debootstrap {SUITE} from {url} (a few minutes; log {log})")
        try:
            _run(["debootstrap", "--variant=minbase",
                  f"--include={DOCKER_BASE_PACKAGES},{VM_PACKAGES}", SUITE, str(mnt), url],
                 "debootstrap", log=log)
        except ImagebakeError:
            debootstrap_log = mnt / "debootstrap" / "debootstrap.log"
            if debootstrap_log.exists():
                print("\n".join(debootstrap_log.read_text().splitlines()[-20:]))
            raise
        _configure(mnt, uuid, mounted, log)
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", str(path)], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)
    # The MBR code jumps to the active partition's boot sector (extlinux).
    with open("/usr/lib/EXTLINUX/mbr.bin", "rb") as fh:
        mbr = fh.read(440)
    with open(raw, "r+b") as fh:
        fh.write(mbr)


def _configure(root: Path, uuid: str, mounted: list[Path], log: Path) -> None:
    _info("configuring boot, cloud-init and network")
    (root / "etc/fstab").write_text(f"UUID={uuid} / ext4 errors=remount-ro 0 1\n")
    (root / "etc/hostname").write_text("debian\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 debian\n")
    (root / "etc/network/interfaces").write_text(INTERFACES)
    (root / "etc/network/interfaces.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/cloud/cloud.cfg.d/90_imagebake.cfg").write_text(CLOUD_CFG)
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    boot = root / "boot"
    kernels = sorted(p.name for p in boot.glob("vmlinuz-*"))
    initrds = sorted(p.name for p in boot.glob("initrd.img-*"))
    if not kernels or not initrds:
        raise ImagebakeError("debootstrap installed no kernel/initrd into /boot")
    (boot / "extlinux").mkdir(exist_ok=True)
    (boot / "extlinux/extlinux.conf").write_text(EXTLINUX_CONF.format(
        kernel=kernels[-1], initrd=initrds[-1], uuid=uuid, args=KERNEL_ARGS))
    _run(["extlinux", "--install", str(boot / "extlinux")], "extlinux --install", log=log)
    # Nothing machine-specific or secret: host keys and machine-id are made at first boot.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/archives/*.deb", "var/log/*.log"):
        for path in root.glob(pattern):
            if path.is_file():
                path.unlink()
    subprocess.run(["sync"], check=False)
