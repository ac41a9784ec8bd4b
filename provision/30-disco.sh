#!/usr/bin/env bash
# Disco itself. DISCO_SOURCE is one of
#   vendored             (default) the pinned upstream archives of vendor/disco.lock, uploaded
#                        by Packer to $IMAGEBAKE_DIR/vendor/: Disco at DISCO_REF (0.5.4 or
#                        develop) and the Erlang deps for this base's OTP; each archive's
#                        commit (pax header) and uncompressed tar sha256 are checked first; our patches (provision/disco/patches/) are applied
#                        only where the base needs them (provision/disco/select.sh). Offline.
#   none                 skip (the image carries Erlang and Python only)
#   offline              the same, set by the wrapper for a local bake that found no archives
#                        and no GitHub (the label says so; `invoke status` tells the user)
#   /path/to/disco.tgz   a source tarball, uploaded by Packer to $IMAGEBAKE_DIR/disco/source.tar
#   a git URL            cloned at DISCO_REF (default 0.5.4); rebar fetches the deps
# The master gets `make install`, nodes `make install-core install-node` (workers need the
# Python library). A vendored build failure (checksum, missing archive, patch, make) is one
# line naming the file and the build log, exit 2.
set -eu
STEP=disco
LIB=${IMAGEBAKE_DIR:-/tmp/imagebake}/provision/lib.sh
[ -r "$LIB" ] || LIB=$(dirname "$0")/lib.sh
# shellcheck source=lib.sh
. "$LIB"

# shellcheck source=disco/select.sh
. "$(dirname "$LIB")/disco/select.sh"

SRC_DIR=/usr/local/src/disco
DISCO_SOURCE=${DISCO_SOURCE:-vendored}
DISCO_REF=${DISCO_REF:-0.5.4}
VENDOR_DIR=$IMAGEBAKE_DIR/vendor
PATCH_DIR=$IMAGEBAKE_DIR/provision/disco/patches
BUILD_LOG=/var/log/imagebake-disco-build.log

# One line naming what failed and the build log; exit 2 (Packer fails, nothing is tagged).
disco_fail() {
    printf '[imagebake %s] error: %s (build log: %s in the image)\n' \
        "$STEP" "$*" "$BUILD_LOG" >&2
    exit 2
}

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

# The Python Disco's build and CLI run: python3 where the base has it as `python`
# (python-is-python3), else `python` (2.7 on trusty).
disco_python() {
    if command -v python >/dev/null 2>&1; then
        echo python
    elif command -v python3 >/dev/null 2>&1; then
        echo python3
    else
        fatal "no python on PATH (Disco's build calls it)"
    fi
}

python_major() { "$1" -c 'import sys; print(sys.version_info[0])'; }

otp_release() {
    erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().' 2>/dev/null
}

# unpack_archive FILE DEST: the archive's single top-level directory becomes DEST.
unpack_archive() {
    local file=$1 dest=$2
    rm -rf "$dest"
    mkdir -p "$dest"
    tar -xzf "$file" -C "$dest" --strip-components=1 >>"$BUILD_LOG" 2>&1 \
        || disco_fail "cannot unpack $file"
}

fetch_vendored() {
    local lock=$VENDOR_DIR/disco.lock otp py rel name ref commit sha file got dest patch n=0 np=0
    : >"$BUILD_LOG"
    [ -f "$lock" ] || disco_fail "missing lock file $lock (Packer uploads vendor/)"
    rel=$(otp_release) || disco_fail "cannot run erl to read the OTP release"
    otp=$(disco_otp_major "$rel") || disco_fail "unknown OTP release '$rel'"
    py=$(python_major "$(disco_python)")
    info "vendored Disco $DISCO_REF for OTP $rel, Python $py (patch conditions: $(disco_conditions "$otp" "$py" | tr '\n' ' '))"
    local selected
    selected=$(disco_lock_select "$lock" "$DISCO_REF" "$otp") \
        || disco_fail "vendor/disco.lock has no Disco at ref '$DISCO_REF' (vendored: 0.5.4 or develop)"
    # Every checksum first: nothing is unpacked from a set that is not whole.
    while read -r name ref commit sha; do
        file=$VENDOR_DIR/disco/$name-$ref.tar.gz
        [ -f "$file" ] || disco_fail "missing archive vendor/disco/$name-$ref.tar.gz: make it with vendor/refresh.sh make"
        # The lock pins the commit and the UNCOMPRESSED tar stream (gzip bytes vary with git).
        got=$(gzip -dc <"$file" 2>>"$BUILD_LOG" | git get-tar-commit-id 2>>"$BUILD_LOG") || got=""
        [ "$got" = "$commit" ] || disco_fail "commit mismatch vendor/disco/$name-$ref.tar.gz: ${got:-no commit}, lock says $commit"
        got=$(gzip -dc <"$file" 2>>"$BUILD_LOG" | sha256sum | cut -d' ' -f1)
        [ "$got" = "$sha" ] || disco_fail "checksum mismatch vendor/disco/$name-$ref.tar.gz: tar sha256 $got, lock says $sha"
        n=$((n + 1))
    done <<<"$selected"
    info "$n archives match vendor/disco.lock"
    while read -r name ref commit sha; do
        file=$VENDOR_DIR/disco/$name-$ref.tar.gz
        if [ "$name" = disco ]; then
            dest=$SRC_DIR
        else
            dest=$SRC_DIR/master/deps/$name
        fi
        unpack_archive "$file" "$dest"
        while IFS= read -r patch; do
            [ -n "$patch" ] || continue
            printf '== %s\n' "${patch#"$IMAGEBAKE_DIR"/provision/}" >>"$BUILD_LOG"
            git -C "$dest" apply --verbose --whitespace=nowarn "$patch" >>"$BUILD_LOG" 2>&1 || {
                tail -n 15 "$BUILD_LOG" >&2
                disco_fail "patch does not apply: provision/${patch#"$IMAGEBAKE_DIR"/provision/} on $name-$ref"
            }
            np=$((np + 1))
        done <<<"$(disco_patches "$PATCH_DIR" "$otp" "$py" "$name" "$ref")"
        info "$name $ref @ ${commit:0:12}"
    done <<<"$selected"
    if [ "$otp" -ge 21 ]; then
        # Disco's bundled master/rebar (a 2013 escript) does not run on OTP >= 21.
        command -v rebar >/dev/null 2>&1 || disco_fail "no rebar on PATH (Debian package rebar) for OTP $rel"
        ln -sfn "$(command -v rebar)" "$SRC_DIR/master/rebar"
        info "OTP $rel: building with $(rebar --version 2>/dev/null | head -n 1)"
    fi
    info "$np patches applied"
}

build_install() {
    local targets=install python py_opts=""
    [ "$IMAGEBAKE_ROLE" = master ] || targets="install-core install-node"
    python=$(disco_python)
    # Debian's python3 reads dist-packages: --install-layout=deb puts the library there.
    if [ "$(python_major "$python")" = 3 ] && is_debian; then
        py_opts=--install-layout=deb
    fi
    info "make $targets (python is $($python --version 2>&1))"
    # shellcheck disable=SC2086
    make -C "$SRC_DIR" $targets PYTHON="$python" PY_INSTALL_OPTS="$py_opts" >>"$BUILD_LOG" 2>&1 || {
        tail -n 30 "$BUILD_LOG" >&2
        disco_fail "make $targets failed in $SRC_DIR"
    }
    "$python" -c 'import disco' >>"$BUILD_LOG" 2>&1 \
        || disco_fail "Disco's Python library does not import with $python after make"
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
    : >"$BUILD_LOG"
    if [ "$DISCO_SOURCE" = none ] || [ "$DISCO_SOURCE" = offline ]; then
        info "disco_source=$DISCO_SOURCE: skipping Disco (the image carries Erlang and Python only)"
        record_source "$DISCO_SOURCE" ""
        return 0
    fi
    # Disco's rebar dependencies point at git://github.com, which GitHub no longer serves.
    export HOME=${HOME:-/root}
    git config --global url."https://github.com/".insteadOf git://github.com/
    case "$DISCO_SOURCE" in
        vendored)
            fetch_vendored
            record_source vendored "$DISCO_REF"
            ;;
        /*)
            fetch_tarball
            record_source "$(basename "$DISCO_SOURCE")" ""
            ;;
        https://* | git://* | ssh://* | git@*)
            fetch_git
            record_source "$DISCO_SOURCE" "$DISCO_REF"
            ;;
        *) fatal "disco_source must be vendored, none, a tarball path or a git URL, not '$DISCO_SOURCE'" ;;
    esac
    build_install
    info "Disco installed from $DISCO_SOURCE"
}

main "$@"
