# shellcheck shell=bash
# Which vendored archives and which of our patches a base gets. Pure functions of their
# arguments (no OS probing), so tests can call them with fake versions:
#   bash -c '. provision/disco/select.sh; disco_patches provision/disco/patches 16 2 disco 0.5.4'
#
# Patches live in provision/disco/patches/<condition>/<name>-<ref>/NNNN-reason.patch, where
# <condition> is one of
#   any      every base that builds from the vendored archive (e.g. {vsn, git} without .git)
#   otp21+   only when the base's Erlang/OTP major release is >= 21 (try ... catch C:R:S,
#            tuple_calls, newer deps): Ubuntu 14.04's R16B03 never gets them
#   py3      only when Disco's Python is 3 (Ubuntu 14.04 builds Disco with Python 2.7)
# A directory of any other name is never applied. <name>-<ref> must equal an archive of the
# lock, so a patch cannot land on another version of the same dependency.

# disco_otp_major RELEASE: "25" -> 25, "R16B03" -> 16, "R16B03-1" -> 16; nothing for garbage.
disco_otp_major() {
    local rel=${1#R}
    rel=${rel%%[!0-9]*}
    [ -n "$rel" ] || return 1
    printf '%s\n' "$((10#$rel))"
}

# disco_conditions OTP_MAJOR PY_MAJOR: the patch conditions that hold, in apply order.
disco_conditions() {
    local otp=$1 py=$2
    case "$otp" in '' | *[!0-9]*) return 1 ;; esac
    case "$py" in 2 | 3) ;; *) return 1 ;; esac
    printf 'any\n'
    [ "$otp" -lt 21 ] || printf 'otp21+\n'
    [ "$py" != 3 ] || printf 'py3\n'
}

# disco_lock_select LOCK DISCO_REF OTP_MAJOR: "name ref commit sha256" of every archive the
# build needs (Disco first). Fails when the lock has no Disco at DISCO_REF.
disco_lock_select() {
    local lock=$1 want=$2 otp=$3
    case "$otp" in '' | *[!0-9]*) return 1 ;; esac
    awk -v want="$want" -v otp="$otp" '
        /^[[:space:]]*(#|$)/ { next }
        $3 == "disco" { if ($2 == want) { print $1, $2, $4, $5; found = 1 } ; next }
        $3 == "any" || ($3 == "otp21+" && otp >= 21) || ($3 == "otp<21" && otp < 21) { deps[++n] = $1 " " $2 " " $4 " " $5 }
        END {
            if (!found) exit 3
            for (i = 1; i <= n; i++) print deps[i]
        }' "$lock"
}

# disco_patches ROOT OTP_MAJOR PY_MAJOR NAME REF: the patch files for the tree NAME-REF,
# in the order they are applied (condition order, then file name).
disco_patches() {
    local root=$1 otp=$2 py=$3 name=$4 ref=$5 cond f conds
    conds=$(disco_conditions "$otp" "$py") || return 1
    for cond in $conds; do
        [ -d "$root/$cond/$name-$ref" ] || continue
        for f in "$root/$cond/$name-$ref"/*.patch; do
            [ -f "$f" ] && printf '%s\n' "$f"
        done
    done
    return 0
}
