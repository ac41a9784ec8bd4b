#!/bin/sh
# Last step of a QEMU bake (Packer's shutdown_command runs it as root): remove the
# throw-away bake login and everything first boot must make afresh, then power off.
# Usage: qemu-finish-bake.sh BAKE_USER
set -eu

info() { printf '[finish-bake] %s\n' "$*" >&2; }

BAKE_USER=${1:?usage: qemu-finish-bake.sh BAKE_USER}
case $BAKE_USER in
    imagebake-bake*) ;;
    *) info "refusing to remove user '$BAKE_USER' (not a bake login)"; exit 2 ;;
esac

finish() {
    if id "$BAKE_USER" >/dev/null 2>&1; then
        userdel -f -r "$BAKE_USER" 2>/dev/null || userdel -f "$BAKE_USER"
    fi
    rm -rf "/home/${BAKE_USER:?}"
    # cloud-init's sudo rule for the bake login, its record of this boot, the bake's
    # network, host keys and machine id: a launched VM makes its own.
    rm -f /etc/sudoers.d/90-cloud-init-users
    if cloud-init clean --help >/dev/null 2>&1; then
        cloud-init clean --logs
    else
        rm -rf /var/lib/cloud/instance /var/lib/cloud/instances/* /var/lib/cloud/sem/*
        rm -f /var/log/cloud-init.log /var/log/cloud-init-output.log
    fi
    rm -f /etc/network/interfaces.d/50-cloud-init /etc/network/interfaces.d/50-cloud-init.cfg
    rm -f /etc/ssh/ssh_host_*
    if [ -f /etc/machine-id ]; then : >/etc/machine-id; fi
    rm -f /var/lib/dbus/machine-id
    rm -f /root/.bash_history
    rm -f "$0"
    sync
    info "bake login $BAKE_USER removed; powering off"
    shutdown -P now
}

finish
