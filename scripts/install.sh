#!/usr/bin/env bash
# Install everything imagebake needs on a Debian/Ubuntu machine, idempotently:
# apt packages, a running Docker daemon, the Python venv (.venv) and the local
# offline base image. Safe to re-run; prints what it does.
set -eu

info()  { printf '[install] %s\n' "$*" >&2; }
fatal() { printf '[install] error: %s\n' "$*" >&2; exit 2; }

APT_PACKAGES="packer debootstrap shellcheck python3-venv git"
# The qemu target: VMs, the bootable base (extlinux, sfdisk), seeds, bridge captures.
QEMU_PACKAGES="qemu-system-x86 qemu-utils genisoimage extlinux syslinux-common fdisk tcpdump iproute2"

verify_system() {
    [ -r /etc/os-release ] || fatal "no /etc/os-release: only Debian and Ubuntu are supported"
    # shellcheck disable=SC1091
    . /etc/os-release
    case "${ID:-}:${ID_LIKE:-}" in
        debian:*|ubuntu:*|*:*debian*) ;;
        *) fatal "unsupported system ${PRETTY_NAME:-unknown}: needs Debian or Ubuntu" ;;
    esac
    [ "$(id -u)" = 0 ] || fatal "run as root (apt-get, debootstrap and docker need it)"
}

install_apt() {
    packages=()
    for pkg in $APT_PACKAGES $QEMU_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || packages+=("$pkg")
    done
    if ! command -v docker >/dev/null 2>&1; then
        packages+=(docker.io)
    fi
    if [ "${#packages[@]}" -gt 0 ]; then
        case " ${packages[*]} " in
            *" qemu-system-x86 "*)
                # qemu-system-x86 needs its own release's qemu-utils: a newer one from
                # elsewhere (backports) is replaced by the distribution's.
                # shellcheck disable=SC1091
                codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
                if [ -n "$codename" ]; then
                    read -r -a packages <<<"${packages[*]/#qemu-utils/}"
                    packages+=("qemu-utils/$codename")
                fi ;;
        esac
        info "apt-get install ${packages[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades \
            "${packages[@]}" >/dev/null
    fi
}

start_docker() {
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    info "starting the Docker daemon"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl start docker || true
    fi
    if ! docker info >/dev/null 2>&1; then
        nohup dockerd >/var/log/imagebake-dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        sleep 1
    done
    fatal "the Docker daemon did not start (see /var/log/imagebake-dockerd.log)"
}

install_venv() {
    if [ ! -x .venv/bin/python ]; then
        info "creating .venv"
        python3 -m venv .venv
    fi
    info "pip install -e .[dev]"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
}

vendor_archives() {
    # Disco's pinned upstream archives (vendor/disco.lock) are not committed: make them
    # from GitHub when they are missing. Offline this fails; the bake then says what to do.
    if vendor/refresh.sh check >/dev/null 2>&1; then
        info "vendored Disco archives present and matching vendor/disco.lock"
        return 0
    fi
    info "making the vendored Disco archives (vendor/refresh.sh make; needs GitHub)"
    if ! vendor/refresh.sh make >/tmp/imagebake-vendor.log 2>&1 || ! vendor/refresh.sh check >/dev/null 2>&1; then
        info "warning: vendored Disco archives not available (see /tmp/imagebake-vendor.log): bake with --var disco_source=none, or run vendor/refresh.sh make where GitHub is reachable"
    fi
}

main() {
    cd "$(dirname "$0")/.."
    verify_system
    install_apt
    start_docker
    install_venv
    info "local base image"
    .venv/bin/invoke base-image
    vendor_archives
    info "done: activate with . .venv/bin/activate"
}

{ main "$@"; }
