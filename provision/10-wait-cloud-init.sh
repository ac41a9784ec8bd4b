#!/usr/bin/env bash
# Wait until cloud-init has finished its first boot (EC2, VMs): it runs apt
# and rewrites files we are about to change. Containers have no cloud-init.
set -eu
STEP=wait-cloud-init
LIB=${IMAGEBAKE_DIR:-/tmp/imagebake}/provision/lib.sh
[ -r "$LIB" ] || LIB=$(dirname "$0")/lib.sh
# shellcheck source=lib.sh
. "$LIB"

main() {
    verify_system
    if in_container; then
        info "container: no cloud-init to wait for"
        return 0
    fi
    if ! command -v cloud-init >/dev/null 2>&1; then
        info "no cloud-init on this system"
        return 0
    fi
    local waited=0
    info "waiting for cloud-init to finish (/var/lib/cloud/instance/boot-finished)"
    until [ -f /var/lib/cloud/instance/boot-finished ]; do
        [ "$waited" -lt 600 ] || fatal "cloud-init did not finish within 600 s"
        sleep 5
        waited=$((waited + 5))
    done
    info "cloud-init finished after ${waited} s of waiting"
}

main "$@"
