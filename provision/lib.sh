# shellcheck shell=bash
# Helpers sourced by every provision step. Steps run as root inside the image
# being baked (Docker container or EC2 instance) with these variables:
#   IMAGEBAKE_ROLE    master | node
#   IMAGEBAKE_TARGET  docker | amazon-ebs | qemu   (Packer's source type)
#   IMAGEBAKE_DIR     where Packer uploaded provision/, agent/ and disco/
#   DISCO_SOURCE, DISCO_REF   see 30-disco.sh
# Supported: Ubuntu 14.04 (upstart, python3.4, Erlang R16B03, resolvconf) and
# Debian 12 (the local base image); other Debian/Ubuntu releases best effort.

STEP=${STEP:-provision}
IMAGEBAKE_DIR=${IMAGEBAKE_DIR:-/tmp/imagebake}
IMAGEBAKE_TARGET=${IMAGEBAKE_TARGET:-docker}
IMAGEBAKE_ROLE=${IMAGEBAKE_ROLE:-}
export DEBIAN_FRONTEND=noninteractive
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

info()  { printf '[imagebake %s] %s\n' "$STEP" "$*"; }
warn()  { printf '[imagebake %s] warning: %s\n' "$STEP" "$*" >&2; }
fatal() { printf '[imagebake %s] error: %s\n' "$STEP" "$*" >&2; exit 1; }

# Facts from /etc/os-release, read in a subshell so nothing else leaks in.
os_field() {
    # shellcheck disable=SC1091
    (. /etc/os-release && eval "printf '%s' \"\${$1:-}\"")
}

load_os() {
    [ -r /etc/os-release ] || fatal "no /etc/os-release: cannot tell which system this is"
    OS_ID=$(os_field ID)
    OS_VERSION_ID=$(os_field VERSION_ID)
    OS_PRETTY=$(os_field PRETTY_NAME)
}

is_trusty() { [ "$OS_ID" = ubuntu ] && [ "$OS_VERSION_ID" = 14.04 ]; }
is_debian() { [ "$OS_ID" = debian ]; }

in_container() {
    [ "$IMAGEBAKE_TARGET" = docker ] || [ -f /.dockerenv ] || [ -f /run/.containerenv ]
}

on_aws() { [ "$IMAGEBAKE_TARGET" = amazon-ebs ]; }

# The init system the image will boot with: systemd, upstart or none (container).
image_init() {
    if in_container; then
        echo none
    elif [ -d /run/systemd/system ]; then
        echo systemd
    elif [ -x /sbin/initctl ] && /sbin/initctl version 2>/dev/null | grep -q upstart; then
        echo upstart
    elif [ -x /lib/systemd/systemd ]; then
        echo systemd
    else
        echo sysv
    fi
}

# Packages every image needs, by release; keep in sync with provision/base/docker-base.sh.
base_packages() {
    local common="erlang-nox erlang-dev openssh-server openssh-client dnsmasq python3 make git ca-certificates iproute2 procps iputils-ping netbase sudo cron iptables"
    if is_trusty; then
        # trusty: `python` is python2.7 (Disco 0.5's build and CLI use it)
        echo "$common python"
    else
        echo "$common python-is-python3"
    fi
}

# Packages Disco's build needs beyond base_packages (disco_source other than none). Debian 12:
# python3-distutils (Disco's setup.py). Its rebar comes from rebar_escript below, not apt.
disco_build_packages() {
    if is_trusty; then
        echo "python-setuptools"
    else
        echo "python3-distutils"
    fi
}

# Debian's rebar 2.6.4 escript: Disco's bundled master/rebar (2013) fails on OTP >= 21.
# The rebar package depends on erlang-reltool -> erlang-wx -> GTK/WebKit (~220 packages,
# systemd-sysv among them), none of which rebar's compile needs, so only its escript is
# taken: `apt-get download rebar`, unpacked to REBAR_ESCRIPT, from the system's apt sources
# (provision/base/docker-base.sh does the same for the offline base image).
REBAR_ESCRIPT=/usr/local/bin/rebar
install_rebar_escript() {
    local tmp rc=0
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get -q download rebar) >/dev/null 2>&1 || rc=1
    if [ "$rc" = 0 ]; then
        dpkg-deb -x "$tmp"/rebar_*.deb "$tmp/x" && install -m 0755 "$tmp/x/usr/bin/rebar" "$REBAR_ESCRIPT" || rc=1
    fi
    rm -rf "$tmp"
    return "$rc"
}

pkg_installed() {
    dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q ' installed$'
}

missing_packages() {
    local pkg out=""
    for pkg in "$@"; do
        pkg_installed "$pkg" || out="$out $pkg"
    done
    echo "${out# }"
}

# Keep services from starting while packages are installed during the bake.
block_service_starts() {
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# imagebake: no service starts during the bake\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
    fi
}

unblock_service_starts() {
    if grep -q '^# imagebake:' /usr/sbin/policy-rc.d 2>/dev/null; then
        rm -f /usr/sbin/policy-rc.d
    fi
}

# apt-get with retries: on a fresh EC2 instance apt may still be locked.
apt_retry() {
    local n=0
    until apt-get -q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"; do
        n=$((n + 1))
        [ "$n" -lt 10 ] || fatal "apt-get $* failed 10 times"
        warn "apt-get $* failed (attempt $n); retrying in 10 s"
        sleep 10
    done
}

# write_file PATH MODE: content on stdin, written atomically.
write_file() {
    local path=$1 mode=$2 tmp
    mkdir -p "$(dirname "$path")"
    tmp=$(mktemp "$path.imagebake.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$path"
}

# set_kv FILE KEY VALUE: KEY=VALUE in a shell-style file (/etc/default/*).
set_kv() {
    local file=$1 key=$2 value=$3
    touch "$file"
    sed -i -r "/^[[:space:]]*$key=/d" "$file"
    printf '%s=%s\n' "$key" "$value" >>"$file"
}

ensure_disco_user() {
    if ! getent passwd disco >/dev/null; then
        getent group disco >/dev/null || groupadd --system disco
        useradd --system --gid disco --home-dir /home/disco --create-home --shell /bin/bash \
            --comment "Disco MapReduce" disco
        info "created user disco"
    fi
    mkdir -p /home/disco
    chown disco:disco /home/disco
    chmod 0755 /home/disco
}

verify_system() {
    [ "$(id -u)" = 0 ] || fatal "must run as root"
    load_os
    case "$OS_ID:$OS_VERSION_ID" in
        ubuntu:14.04 | debian:12) ;;
        ubuntu:* | debian:*) warn "untested release $OS_PRETTY; continuing" ;;
        *) fatal "unsupported system $OS_PRETTY (need Ubuntu 14.04 or Debian 12)" ;;
    esac
    case "$IMAGEBAKE_ROLE" in
        master | node) ;;
        *) fatal "IMAGEBAKE_ROLE must be master or node, not '$IMAGEBAKE_ROLE'" ;;
    esac
    command -v dpkg-query >/dev/null || fatal "not a dpkg-based system"
}
