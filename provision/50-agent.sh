#!/usr/bin/env bash
# The first-boot agent (stdlib Python, imagebake/agent/ in the repo) and what it
# relies on: the disco user, hardened sshd, and a boot service (systemd unit on
# Debian 12, upstart job on trusty; in Docker the image's ENTRYPOINT runs it).
set -eu
STEP=agent
LIB=${IMAGEBAKE_DIR:-/tmp/imagebake}/provision/lib.sh
[ -r "$LIB" ] || LIB=$(dirname "$0")/lib.sh
# shellcheck source=lib.sh
. "$LIB"

AGENT_SRC=$IMAGEBAKE_DIR/agent
AGENT_HOME=/opt/imagebake
AGENT_PKG=$AGENT_HOME/imagebake_agent
AGENT_BIN=/usr/local/sbin/imagebake-agent
FENCE_BIN=/usr/local/sbin/imagebake-fence
SSHD_CONFIG=/etc/ssh/sshd_config

install_agent() {
    [ -f "$AGENT_SRC/__main__.py" ] || fatal "agent not uploaded: no $AGENT_SRC/__main__.py"
    command -v python3 >/dev/null 2>&1 || fatal "no python3 in the image"
    rm -rf "$AGENT_PKG.new"
    mkdir -p "$AGENT_PKG.new"
    # Only the package's modules: no caches, no tests, no editor files.
    local src
    for src in "$AGENT_SRC"/*.py; do
        install -m 0644 "$src" "$AGENT_PKG.new/"
    done
    python3 -m compileall -q "$AGENT_PKG.new" >/dev/null \
        || fatal "the agent does not compile under $(python3 --version 2>&1)"
    rm -rf "$AGENT_PKG"
    mv "$AGENT_PKG.new" "$AGENT_PKG"
    # compileall again: the .pyc files recorded the .new path
    rm -rf "$AGENT_PKG/__pycache__"
    python3 -m compileall -q "$AGENT_PKG" >/dev/null
    chmod 0755 "$AGENT_HOME" "$AGENT_PKG"
    write_file "$AGENT_BIN" 0755 <<'WRAPPER'
#!/bin/sh
# imagebake first-boot agent (installed by provision/50-agent.sh)
PYTHONPATH=/opt/imagebake exec python3 -m imagebake_agent "$@"
WRAPPER
    "$AGENT_BIN" --help >/dev/null 2>&1 || fatal "$AGENT_BIN --help fails: $("$AGENT_BIN" --help 2>&1 | tail -n 1)"
    info "agent installed in $AGENT_PKG ($(python3 --version 2>&1))"
}

# Only root may reach the instance metadata service (the user data holds the join token
# and the Erlang cookie; any local user can get an IMDSv2 token). Run at every boot
# before the network comes up, whatever later finds the spec; the agent re-checks it.
install_fence() {
    write_file "$FENCE_BIN" 0755 <<'FENCE'
#!/bin/sh
# imagebake: only root may reach 169.254.169.254 (installed by provision/50-agent.sh)
PATH=/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin
if ! command -v iptables >/dev/null 2>&1; then
    echo "imagebake-fence: no iptables: the metadata service is NOT fenced" >&2
    exit 1
fi
if iptables -w -C OUTPUT -d 169.254.169.254 -m owner ! --uid-owner 0 -j REJECT 2>/dev/null; then
    exit 0
fi
exec iptables -w -A OUTPUT -d 169.254.169.254 -m owner ! --uid-owner 0 -j REJECT
FENCE
    command -v iptables >/dev/null 2>&1 \
        || info "WARNING: no iptables in the image: the metadata fence cannot be installed"
}

install_service() {
    case "$(image_init)" in
        none)
            info "container: the image's ENTRYPOINT runs the agent (no metadata service, no TTL unit)"
            ;;
        systemd)
            write_file /etc/systemd/system/imagebake-fence.service 0644 <<UNIT
[Unit]
Description=imagebake: only root may reach the instance metadata service
DefaultDependencies=no
After=local-fs.target
Before=network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$FENCE_BIN

[Install]
WantedBy=sysinit.target
UNIT
            write_file /etc/systemd/system/imagebake-agent.service 0644 <<UNIT
[Unit]
Description=imagebake first-boot agent (forms the Disco cluster)
Wants=network-online.target imagebake-fence.service
After=network-online.target cloud-config.service imagebake-fence.service

[Service]
Type=simple
ExecStart=$AGENT_BIN run
Restart=on-failure
RestartSec=5
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT
            # The power-off at the deadline is handed to logind (shutdown -P +N) by its own
            # unit: stopping or crashing the agent does not cancel it.
            write_file /etc/systemd/system/imagebake-ttl.service 0644 <<UNIT
[Unit]
Description=imagebake: schedule the power-off at the cluster's ttl_deadline
Wants=network-online.target
After=network-online.target cloud-config.service imagebake-fence.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$AGENT_BIN ttl
Restart=on-failure
RestartSec=30

[Install]
WantedBy=multi-user.target
UNIT
            mkdir -p /etc/systemd/system/multi-user.target.wants /etc/systemd/system/sysinit.target.wants
            ln -sfn /etc/systemd/system/imagebake-fence.service \
                /etc/systemd/system/sysinit.target.wants/imagebake-fence.service
            local unit
            for unit in imagebake-agent imagebake-ttl; do
                ln -sfn /etc/systemd/system/$unit.service \
                    /etc/systemd/system/multi-user.target.wants/$unit.service
            done
            info "systemd units imagebake-fence, imagebake-agent, imagebake-ttl enabled"
            ;;
        upstart)
            write_file /etc/init/imagebake-fence.conf 0644 <<JOB
# imagebake: only root may reach the instance metadata service
description "imagebake metadata fence"

start on starting networking
task

exec $FENCE_BIN
JOB
            write_file /etc/init/imagebake-agent.conf 0644 <<JOB
# imagebake first-boot agent (forms the Disco cluster)
description "imagebake first-boot agent"

start on (started networking or started cloud-final)
stop on runlevel [016]

respawn
respawn limit 10 60
limit nofile 65536 65536
console log

exec $AGENT_BIN run
JOB
            # Its own job, waiting for the deadline: the agent's job giving up (respawn
            # limit) or being stopped does not cancel the power-off.
            write_file /etc/init/imagebake-ttl.conf 0644 <<JOB
# imagebake: power off at the cluster's ttl_deadline
description "imagebake ttl"

start on (started networking or started cloud-final)
stop on runlevel [016]

respawn
respawn limit unlimited
console log

exec $AGENT_BIN ttl --wait
JOB
            info "upstart jobs imagebake-fence, imagebake-agent, imagebake-ttl installed"
            ;;
        *)
            fatal "no init system to run the agent at boot (need systemd or upstart)"
            ;;
    esac
}

# set_sshd KEY VALUE: one active line, at the top (before any Match block).
set_sshd() {
    local key=$1 value=$2
    sed -i -r "/^[[:space:]]*${key}[[:space:]]/d" "$SSHD_CONFIG"
    sed -i "1i $key $value" "$SSHD_CONFIG"
}

harden_sshd() {
    [ -f "$SSHD_CONFIG" ] || fatal "no $SSHD_CONFIG: is openssh-server installed?"
    # trusty's OpenSSH 6.6 has no Include: edit the main file on every release.
    set_sshd UseDNS no
    set_sshd PermitRootLogin no
    set_sshd PasswordAuthentication no
    set_sshd ChallengeResponseAuthentication no
    # Only the ed25519 host key, which the agent generates at first boot.
    sed -i -r '/^[[:space:]]*#?[[:space:]]*HostKey[[:space:]]/d' "$SSHD_CONFIG"
    sed -i "1i HostKey /etc/ssh/ssh_host_ed25519_key" "$SSHD_CONFIG"
    sed -i "1i # imagebake: hardened by provision/50-agent.sh" "$SSHD_CONFIG"
    if [ -d /etc/ssh/sshd_config.d ]; then
        # Include'd first, so these win over any later drop-in (first value wins).
        write_file /etc/ssh/sshd_config.d/00-imagebake.conf 0644 <<'CONF'
# imagebake: no passwords, no root logins
PasswordAuthentication no
PermitRootLogin no
CONF
    fi
    if is_trusty; then
        # trusty's sshd -t insists on existing host keys; the agent makes them at boot.
        info "sshd_config hardened (checked at first boot; trusty's sshd -t needs host keys)"
        return 0
    fi
    local key
    key=$(mktemp -d)/k
    ssh-keygen -q -t ed25519 -N '' -f "$key"
    mkdir -p /run/sshd
    # (sshd also reports the missing baked-in HostKey here; only a config error fails)
    /usr/sbin/sshd -t -f "$SSHD_CONFIG" -h "$key" 2>/dev/null || fatal "sshd rejects the hardened $SSHD_CONFIG: $(/usr/sbin/sshd -t -f "$SSHD_CONFIG" -h "$key" 2>&1 | tail -n 1)"
    rm -rf "$(dirname "$key")"
    info "sshd_config hardened and checked"
}

record_role() {
    mkdir -p /etc/imagebake
    printf '%s\n' "$IMAGEBAKE_ROLE" >/etc/imagebake/role
    chmod 0644 /etc/imagebake/role
}

main() {
    verify_system
    ensure_disco_user
    record_role
    install_agent
    install_fence
    install_service
    harden_sshd
}

main "$@"
