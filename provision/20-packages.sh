#!/usr/bin/env bash
# Erlang, OpenSSH, dnsmasq, Python and Disco's build tools. When every package
# is already there (the local base image) the network is not touched at all.
set -eu
STEP=packages
LIB=${IMAGEBAKE_DIR:-/tmp/imagebake}/provision/lib.sh
[ -r "$LIB" ] || LIB=$(dirname "$0")/lib.sh
# shellcheck source=lib.sh
. "$LIB"

build_packages() {
    # Only needed to build Disco from source.
    [ "${DISCO_SOURCE:-none}" != none ] || return 0
    disco_build_packages
}

# OTP >= 21 bases build Disco with Debian's rebar escript (see install_rebar_escript).
need_rebar() {
    [ "${DISCO_SOURCE:-none}" != none ] && ! is_trusty && ! command -v rebar >/dev/null 2>&1
}

ensure_rebar() {
    need_rebar || return 0
    info "installing Debian's rebar escript as $REBAR_ESCRIPT"
    install_rebar_escript || fatal "cannot get Debian's rebar (apt-get download rebar)"
}

main() {
    verify_system
    local wanted missing
    # shellcheck disable=SC2046
    wanted="$(base_packages) $(build_packages)"
    # shellcheck disable=SC2086
    missing=$(missing_packages $wanted)
    if [ -z "$missing" ] && ! need_rebar; then
        info "all $(echo "$wanted" | wc -w) packages already installed on $OS_PRETTY; not touching the network"
        return 0
    fi
    if [ -z "$missing" ]; then
        apt_retry update
        ensure_rebar
        return 0
    fi
    info "installing on $OS_PRETTY: $missing"
    block_service_starts
    trap unblock_service_starts EXIT
    apt_retry update
    # shellcheck disable=SC2086
    apt_retry install --no-install-recommends $missing
    ensure_rebar
    apt-get clean
    # shellcheck disable=SC2086
    missing=$(missing_packages $wanted)
    [ -z "$missing" ] || fatal "still missing after install: $missing"
    info "packages installed"
}

main "$@"
