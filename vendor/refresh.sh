#!/usr/bin/env bash
# Vendored Disco sources: make, check or pin the archives named in vendor/disco.lock.
#   vendor/refresh.sh check          every archive present with the lock's sha256 (exit 2 if not)
#   vendor/refresh.sh make [NAME..]  (re)make missing archives from upstream at the locked commit
#   vendor/refresh.sh pin  [NAME..]  make, then write each archive's sha256 into the lock
# Upstream git comes from the lock's repository URL, or from a local bare clone when
# VENDOR_GIT_DIRS is a directory holding <owner>+<repo>/repo (e.g. an offline mirror).
# An archive is `git archive --format=tar.gz --prefix=<name>/ <commit>`: the same bytes on
# every run with the same git.
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
    if [ -n "${VENDOR_GIT_DIRS:-}" ]; then
        local d
        for d in "$VENDOR_GIT_DIRS/${slug/\//+}/repo" "$VENDOR_GIT_DIRS/${slug/\//+}/repo/.git"; do
            if [ -d "$d" ] && git --git-dir="$d" rev-parse --git-dir >/dev/null 2>&1; then
                printf '%s\n' "$d"
                return 0
            fi
        done
    fi
    tmp=$WORK/${slug/\//+}.git
    [ -d "$tmp" ] || git clone --quiet --bare "$repo" "$tmp" >&2 || die "cannot clone $repo"
    printf '%s\n' "$tmp"
}

make_one() {
    local name=$1 ref=$2 commit=$3 repo=$4 out gd
    out=$DIR/$(archive_name "$name" "$ref")
    gd=$(git_dir_for "$repo")
    git --git-dir="$gd" cat-file -e "$commit^{commit}" 2>/dev/null || die "$repo has no commit $commit ($name $ref)"
    git --git-dir="$gd" archive --format=tar.gz --prefix="$name/" -o "$out.tmp" "$commit" || die "git archive $name failed"
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
        elif [ "$(sha256sum <"$f" | cut -d' ' -f1)" != "$sha" ]; then
            printf 'vendor: checksum mismatch %s (lock %s)\n' "$f" "$sha" >&2; bad=1
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
        if [ "$pin" = no ] && [ -f "$f" ] && [ "$(sha256sum <"$f" | cut -d' ' -f1)" = "$sha" ]; then
            continue
        fi
        make_one "$name" "$ref" "$commit" "$repo"
        new=$(sha256sum <"$f" | cut -d' ' -f1)
        if [ "$pin" = yes ]; then
            awk -v n="$name" -v r="$ref" -v s="$new" '
                !/^[[:space:]]*(#|$)/ && $1 == n && $2 == r { sub(/[^[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+[^[:space:]]+$/, s "  " $6 "  " $7) }
                { print }' "$tmp" >"$tmp.new" && mv -f "$tmp.new" "$tmp"
        elif [ "$new" != "$sha" ]; then
            rm -f "$tmp"
            die "$(basename "$f"): sha256 $new differs from the lock ($sha): upstream or git changed; check, then pin"
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
