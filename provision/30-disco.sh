#!/usr/bin/env bash
# Disco itself. DISCO_SOURCE is one of
#   none                 skip (the image carries Erlang and Python only)
#   /path/to/disco.tgz   a source tarball, uploaded by Packer to $IMAGEBAKE_DIR/disco/source.tar
#   a git URL            cloned at DISCO_REF (default 0.5.4)
# The master gets `make install`, nodes `make install-node`.
set -eu
STEP=disco
LIB=${IMAGEBAKE_DIR:-/tmp/imagebake}/provision/lib.sh
[ -r "$LIB" ] || LIB=$(dirname "$0")/lib.sh
# shellcheck source=lib.sh
. "$LIB"

SRC_DIR=/usr/local/src/disco
DISCO_SOURCE=${DISCO_SOURCE:-https://github.com/discoproject/disco.git}
DISCO_REF=${DISCO_REF:-0.5.4}

record_source() {
    mkdir -p /etc/imagebake
    write_file /etc/imagebake/disco-source 0644 <<INFO
# written by provision/30-disco.sh at bake time
DISCO_SOURCE=$1
DISCO_REF=$2
INFO
}

fetch_tarball() {
    local tarball=$IMAGEBAKE_DIR/disco/source.tar
    [ -s "$tarball" ] || fatal "disco_source is a tarball but $tarball was not uploaded"
    rm -rf "$SRC_DIR"
    mkdir -p "$SRC_DIR"
    # GitHub and `git archive` tarballs have one top-level directory.
    tar -xf "$tarball" -C "$SRC_DIR" --strip-components=1 \
        || fatal "cannot unpack $(basename "$DISCO_SOURCE")"
    [ -f "$SRC_DIR/Makefile" ] || fatal "$(basename "$DISCO_SOURCE") has no top-level Makefile: not a Disco source tree"
}

fetch_git() {
    case "$DISCO_REF" in
        -* | *..* | "") fatal "invalid disco_ref '$DISCO_REF'" ;;
    esac
    rm -rf "$SRC_DIR"
    mkdir -p "$(dirname "$SRC_DIR")"
    info "cloning $DISCO_SOURCE at $DISCO_REF"
    git clone --quiet "$DISCO_SOURCE" "$SRC_DIR" || fatal "git clone $DISCO_SOURCE failed"
    git -C "$SRC_DIR" checkout --quiet "$DISCO_REF" || fatal "no ref $DISCO_REF in $DISCO_SOURCE"
}

build_install() {
    local target=install
    [ "$IMAGEBAKE_ROLE" = master ] || target=install-node
    command -v python >/dev/null 2>&1 || fatal "no \`python\` on PATH (Disco's build calls it)"
    info "make $target (python is $(python --version 2>&1))"
    make -C "$SRC_DIR" "$target" >/var/tmp/disco-build.log 2>&1 || {
        tail -n 30 /var/tmp/disco-build.log >&2
        fatal "make $target failed"
    }
    rm -f /var/tmp/disco-build.log
    # Disco's state lives under $(localstatedir)/disco: /usr/var/disco for 0.5.
    local dir
    for dir in /usr/var/disco /usr/local/var/disco /srv/disco; do
        if [ -d "$dir" ]; then
            chown -R disco:disco "$dir"
            info "$dir owned by disco"
        fi
    done
}

main() {
    verify_system
    ensure_disco_user
    if [ "$DISCO_SOURCE" = none ]; then
        info "disco_source=none: skipping Disco (the image carries Erlang and Python only)"
        record_source none ""
        return 0
    fi
    # Disco's rebar dependencies point at git://github.com, which GitHub no longer serves.
    export HOME=${HOME:-/root}
    git config --global url."https://github.com/".insteadOf git://github.com/
    case "$DISCO_SOURCE" in
        /*)
            fetch_tarball
            record_source "$(basename "$DISCO_SOURCE")" ""
            ;;
        https://* | git://* | ssh://* | git@*)
            fetch_git
            record_source "$DISCO_SOURCE" "$DISCO_REF"
            ;;
        *) fatal "disco_source must be none, a tarball path or a git URL, not '$DISCO_SOURCE'" ;;
    esac
    build_install
    info "Disco installed from $DISCO_SOURCE"
}

main "$@"
