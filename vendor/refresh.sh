#!/usr/bin/env bash
# Vendored Disco sources: make, check or pin the archives named in vendor/disco.lock.
#   vendor/refresh.sh check          every archive present, of the lock's commit, with its sha256
#   vendor/refresh.sh make [NAME..]  (re)make missing archives from upstream at the locked commit
#   vendor/refresh.sh pin  [NAME..]  make, then write each archive's sha256 into the lock
# Upstream is the lock's repository URL, cloned with the user's git configuration: an
# air-gapped user points git at a mirror with `url.<base>.insteadOf` (docs/bake.md).
# An archive is `git archive --format=tar.gz --prefix=<name>/ <commit>`. The lock pins what
# does not depend on the compressor: the commit (git records it in the tar's pax header,
# read back with `git get-tar-commit-id`) and the sha256 of the UNCOMPRESSED tar stream,
# which git < 2.38 (external `gzip -cn`) and git >= 2.38 (internal gzip) write the same.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
LOCK=${VENDOR_LOCK:-$HERE/disco.lock}
DIR=${VENDOR_DIR:-$HERE/disco}

die() { printf 'vendor: error: %s\n' "$*" >&2; exit 2; }
say() { printf 'vendor: %s\n' "$*" >&2; }

# lock_lines: name ref bases commit sha256 licence repository, comments and blanks dropped.
lock_lines() { grep -vE '^[[:space:]]*(#|$)' "$LOCK"; }

archive_name() { printf '%s-%s.tar.gz' "$1" "$2"; }

wanted() {
    local name=$1; shift
    [ "$#" = 0 ] && return 0
    local w
    for w in "$@"; do [ "$w" = "$name" ] && return 0; done
    return 1
}

git_dir_for() {
    local repo=$1 slug tmp
    slug=${repo#https://github.com/}
    slug=${slug%.git}
    tmp=$WORK/${slug//\//+}.git
    [ -d "$tmp" ] || GIT_TERMINAL_PROMPT=0 git clone --quiet --bare "$repo" "$tmp" >&2 \
        || die "cannot clone $repo (offline? point git at a mirror: docs/bake.md, url.<base>.insteadOf)"
    printf '%s
' "$tmp"
}

# tar_sha FILE: sha256 of the archive's uncompressed tar stream (empty if it does not gunzip).
tar_sha() { gzip -dc <"$1" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# tar_commit FILE: the commit git recorded in the archive's pax header.
tar_commit() { gzip -dc <"$1" 2>/dev/null | git get-tar-commit-id 2>/dev/null; }

# matches FILE COMMIT SHA: the archive is of COMMIT and its tar stream has SHA.
matches() { [ "$(tar_commit "$1")" = "$2" ] && [ "$(tar_sha "$1")" = "$3" ]; }

make_one() {
    local name=$1 ref=$2 commit=$3 repo=$4 out gd
    out=$DIR/$(archive_name "$name" "$ref")
    gd=$(git_dir_for "$repo")
    git --git-dir="$gd" cat-file -e "$commit^{commit}" 2>/dev/null || die "$repo has no commit $commit ($name $ref)"
    git --git-dir="$gd" archive --format=tar.gz --prefix="$name/" -o "$out.tmp" "$commit" || {
        rm -f "$out.tmp"
        die "git archive $name failed"
    }
    mv -f "$out.tmp" "$out"
    say "made $(basename "$out") ($name $ref @ ${commit:0:12})"
}

cmd_check() {
    local name ref commit sha repo f bad=0 n=0
    while read -r name ref _ commit sha _ repo; do
        f=$DIR/$(archive_name "$name" "$ref")
        n=$((n + 1))
        if [ ! -f "$f" ]; then
            printf 'vendor: missing %s\n' "$f" >&2; bad=1
        elif [ "$(tar_commit "$f")" != "$commit" ]; then
            printf 'vendor: commit mismatch %s (lock %s)\n' "$f" "$commit" >&2; bad=1
        elif [ "$(tar_sha "$f")" != "$sha" ]; then
            printf 'vendor: checksum mismatch %s (tar sha256, lock %s)\n' "$f" "$sha" >&2; bad=1
        fi
    done < <(lock_lines)
    [ "$bad" = 0 ] || exit 2
    say "all $n archives match $LOCK"
}

cmd_make() {
    local pin=$1; shift
    local name ref commit sha repo f new tmp
    mkdir -p "$DIR"
    tmp=$(mktemp "$LOCK.XXXXXX")
    LOCK_TMP=$tmp  # removed on exit, whatever happens
    cp "$LOCK" "$tmp"
    while read -r name ref _ commit sha _ repo; do
        wanted "$name" "$@" || continue
        f=$DIR/$(archive_name "$name" "$ref")
        if [ "$pin" = no ] && [ -f "$f" ] && matches "$f" "$commit" "$sha"; then
            continue
        fi
        make_one "$name" "$ref" "$commit" "$repo"
        new=$(tar_sha "$f")
        if [ "$pin" = yes ]; then
            awk -v n="$name" -v r="$ref" -v s="$new" '
                !/^[[:space:]]*(#|$)/ && $1 == n && $2 == r { sub(/[^[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+[^[:space:]]+$/, s "  " $6 "  " $7) }
                { print }' "$tmp" >"$tmp.new" && mv -f "$tmp.new" "$tmp"
        elif [ "$new" != "$sha" ]; then
            rm -f "$tmp"
            rm -f "$f"
            die "$(basename "$f"): tar sha256 $new differs from the lock ($sha): upstream changed; check, then pin"
        fi
    done < <(lock_lines)
    if [ "$pin" = yes ]; then
        mv -f "$tmp" "$LOCK"
        say "pinned sha256 in $LOCK"
    else
        rm -f "$tmp"
    fi
}

main() {
    [ -f "$LOCK" ] || die "no lock file $LOCK"
    WORK=$(mktemp -d)
    LOCK_TMP=
    trap 'rm -rf "$WORK"; [ -z "$LOCK_TMP" ] || rm -f "$LOCK_TMP" "$LOCK_TMP.new"' EXIT
    local cmd=${1:-check}
    [ "$#" = 0 ] || shift
    case "$cmd" in
        check) cmd_check ;;
        make) cmd_make no "$@" ;;
        pin) cmd_make yes "$@" ;;
        *) die "usage: $0 check | make [NAME..] | pin [NAME..]" ;;
    esac
}

main "$@"
