#!/usr/bin/env bash
# Build the local offline base image: a Debian 12 rootfs made by debootstrap,
# with every package the provisioning needs already installed, imported into
# Docker. Idempotent: an existing image with the same recipe hash is kept.
# Usage: docker-base.sh IMAGE_TAG [MIRROR]
set -eu

info()  { printf '[base-image] %s\n' "$*" >&2; }
fatal() { printf '[base-image] error: %s\n' "$*" >&2; exit 2; }

# Packages the provisioning scripts expect; keep in sync with provision/lib.sh.
# The last line is what building Disco from vendor/ needs (provision/lib.sh disco_build_packages).
PACKAGES="erlang-nox,erlang-dev,openssh-server,openssh-client,dnsmasq,python3,python-is-python3,make,git,ca-certificates,iproute2,procps,iputils-ping,netbase,sudo,cron,iptables"
PACKAGES="$PACKAGES,python3-distutils"

verify_system() {
    [ "$(id -u)" = 0 ] || fatal "must run as root (debootstrap needs it)"
    command -v debootstrap >/dev/null 2>&1 || fatal "debootstrap not installed (apt-get install debootstrap)"
    command -v docker >/dev/null 2>&1 || fatal "docker not installed"
    docker info >/dev/null 2>&1 || fatal "Docker daemon not running"
}

recipe_hash() {
    { printf '%s\n' "$PACKAGES" "$SUITE" "$MIRROR"; cat "$0"; } | sha256sum | cut -c1-16
}

main() {
    TAG=${1:?usage: docker-base.sh IMAGE_TAG [MIRROR]}
    MIRROR=${2:-http://deb.debian.org/debian}
    SUITE=bookworm
    verify_system
    HASH=$(recipe_hash)
    existing=$(docker image inspect -f '{{ index .Config.Labels "imagebake.recipe" }}' "$TAG" 2>/dev/null || true)
    if [ "$existing" = "$HASH" ]; then
        info "$TAG is up to date (recipe $HASH); nothing to do"
        return 0
    fi
    work=$(mktemp -d /var/tmp/imagebake-base.XXXXXX)
    trap 'rm -rf "$work"' EXIT INT TERM
    info "debootstrap $SUITE into $work/rootfs (this takes a few minutes)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log" >&2; fatal "debootstrap failed"; }
    # Debian's rebar escript only (its package drags in erlang-wx and a GTK stack): see
    # install_rebar_escript in provision/lib.sh, which 20-packages.sh runs on other bases.
    info "adding Debian's rebar escript as /usr/local/bin/rebar"
    local added_resolv=""
    if [ ! -s "$work/rootfs/etc/resolv.conf" ]; then
        cp /etc/resolv.conf "$work/rootfs/etc/resolv.conf" && added_resolv=yes
    fi
    chroot "$work/rootfs" sh -c 'apt-get -q update && mkdir -p /tmp/rebar && cd /tmp/rebar && apt-get -q download rebar && dpkg-deb -x rebar_*.deb x && install -m 0755 x/usr/bin/rebar /usr/local/bin/rebar && rm -rf /tmp/rebar' \
        >>"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; fatal "cannot add the rebar escript"; }
    [ -z "$added_resolv" ] || rm -f "$work/rootfs/etc/resolv.conf"
    # Slim the rootfs and strip anything machine-specific: the image must carry no secret.
    rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/archives/"*.deb
    rm -f "$work/rootfs/etc/ssh/ssh_host_"*
    : >"$work/rootfs/etc/machine-id"
    # Services must not start during later package operations inside the image build.
    info "importing into docker as $TAG"
    tar -C "$work/rootfs" -c . | docker import \
        --change "LABEL imagebake.recipe=$HASH" \
        --change "LABEL imagebake.role=base" \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$TAG" >/dev/null
    info "built $TAG (recipe $HASH)"
}

main "$@"
