#!/usr/bin/env bash
# LAST step: the image must carry no secret and nothing machine-specific.
# Removes SSH host keys, every private key, authorized_keys, Erlang cookies,
# shell history, cloud-init instance state, the machine id, apt lists and /tmp,
# then scans again and fails the bake if anything is left.
set -eu
STEP=cleanup
LIB=${IMAGEBAKE_DIR:-/tmp/imagebake}/provision/lib.sh
[ -r "$LIB" ] || LIB=$(dirname "$0")/lib.sh
# shellcheck source=lib.sh
. "$LIB"

# Paths never scanned: kernel file systems and Packer's upload mount (host files).
PRUNE=( '(' -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /packer-files ')' -prune -o )
SECRET_NAMES=( '(' -name 'ssh_host_*key' -o -name 'ssh_host_*key.pub' -o -name authorized_keys
    -o -name authorized_keys2 -o -name .erlang.cookie -o -name .bash_history -o -name .zsh_history
    -o -name .sh_history -o -name .python_history -o -name .mysql_history -o -name .psql_history
    -o -name .lesshst -o -name .viminfo -o -name .wget-hsts ')' )

# Files holding a PEM private key block (header then base64), not programs
# that merely contain the header string (ssh-keygen, libgnutls, ...).
private_key_files() {
    find / -xdev "${PRUNE[@]}" -type f -size -1024k -print0 2>/dev/null \
        | xargs -0 -r grep -lsaE -e '-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----' 2>/dev/null \
        | while IFS= read -r f; do
            if grep -aA1 -E -e '-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[[:space:]]*$' "$f" 2>/dev/null \
                | grep -qaE '^([A-Za-z0-9+/=]{40,}|Proc-Type:.*)[[:space:]]*$'; then
                printf '%s\n' "$f"
            fi
        done
}

secret_files() {
    find / -xdev "${PRUNE[@]}" '(' -type f -o -type l ')' "${SECRET_NAMES[@]}" -print 2>/dev/null
}

remove_secrets() {
    local f n=0
    while IFS= read -r f; do
        rm -f "$f" && n=$((n + 1))
    done < <(secret_files)
    while IFS= read -r f; do
        rm -f "$f" && n=$((n + 1))
        info "removed private key $f"
    done < <(private_key_files)
    rm -rf /root/.ssh /root/.gnupg /root/.cache /root/.erlang.cookie
    info "removed $n secret or history files"
}

cloud_init_state() {
    if command -v cloud-init >/dev/null 2>&1 && cloud-init clean --help >/dev/null 2>&1; then
        cloud-init clean --logs
        info "cloud-init clean --logs"
    elif [ -d /var/lib/cloud ]; then
        # trusty's cloud-init 0.7.5 has no `clean`
        rm -rf /var/lib/cloud/instances /var/lib/cloud/instance /var/lib/cloud/data \
            /var/lib/cloud/sem /var/log/cloud-init.log /var/log/cloud-init-output.log
        info "cloud-init instance state removed"
    fi
}

machine_state() {
    if [ -f /etc/machine-id ]; then
        : >/etc/machine-id
    fi
    if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
        rm -f /var/lib/dbus/machine-id
    fi
    rm -rf /var/lib/imagebake /run/imagebake /etc/imagebake/state
    rm -f /etc/udev/rules.d/70-persistent-net.rules
    unblock_service_starts
}

apt_and_tmp() {
    apt-get clean >/dev/null 2>&1 || true
    rm -rf /var/lib/apt/lists/*
    mkdir -p /var/lib/apt/lists/partial
    rm -rf /usr/local/src/disco/.git
    find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete 2>/dev/null || true
    find /var/log -type f -exec truncate -s 0 {} + 2>/dev/null || true
    # Everything Packer uploaded lives under /tmp: remove it last (this script
    # keeps running from its open file descriptor).
    find /tmp /var/tmp -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null || true
}

verify_clean() {
    local left
    left=$( { secret_files; private_key_files; } | sort -u)
    [ -z "$left" ] || fatal "secrets left in the image: $(echo "$left" | tr '\n' ' ')"
    info "secret scan clean"
}

main() {
    verify_system
    remove_secrets
    cloud_init_state
    machine_state
    apt_and_tmp
    verify_clean
}

main "$@"
