#!/usr/bin/env bash
# Quiet networking: after boot the image talks to no package repository, MOTD
# or NTP pool on its own. Resolver: the master runs dnsmasq for the cluster
# (the agent maintains /etc/imagebake/hosts and /etc/imagebake/resolv.upstream);
# nodes keep dnsmasq installed but disabled. NTP goes to the Amazon Time Sync
# Service on AWS only.
set -eu
STEP=network
LIB=${IMAGEBAKE_DIR:-/tmp/imagebake}/provision/lib.sh
[ -r "$LIB" ] || LIB=$(dirname "$0")/lib.sh
# shellcheck source=lib.sh
. "$LIB"

AWS_NTP=169.254.169.123
DNSMASQ_BEGIN="# BEGIN imagebake: written by provision/40-network.sh"
DNSMASQ_END="# END imagebake"

periodic_apt_off() {
    write_file /etc/apt/apt.conf.d/99imagebake-periodic 0644 <<'CONF'
// imagebake: no periodic apt runs (no repository traffic after boot)
APT::Periodic::Enable "0";
APT::Periodic::Update-Package-Lists "0";
APT::Periodic::Download-Upgradeable-Packages "0";
APT::Periodic::AutocleanInterval "0";
APT::Periodic::Unattended-Upgrade "0";
CONF
    if [ -f /etc/apt/apt.conf.d/20auto-upgrades ]; then
        sed -i -r 's/"1"/"0"/' /etc/apt/apt.conf.d/20auto-upgrades
    fi
    # trusty runs apt from cron.daily; Debian's cron.daily/apt-compat does the same without systemd.
    local job
    for job in /etc/cron.daily/apt /etc/cron.daily/apt-compat /etc/cron.weekly/update-notifier-common \
        /etc/cron.daily/update-notifier-common; do
        if [ -f "$job" ]; then
            chmod a-x "$job"
            info "disabled $job"
        fi
    done
    local unit
    for unit in apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
        unattended-upgrades.service motd-news.timer motd-news.service; do
        if [ -f "/lib/systemd/system/$unit" ] || [ -f "/usr/lib/systemd/system/$unit" ]; then
            ln -sfn /dev/null "/etc/systemd/system/$unit"
            info "masked $unit"
        fi
    done
    if pkg_installed unattended-upgrades; then
        write_file /etc/apt/apt.conf.d/51imagebake-unattended 0644 <<'CONF'
// imagebake: unattended-upgrades installed but never run
Unattended-Upgrade::Allowed-Origins {};
Unattended-Upgrade::Origins-Pattern {};
CONF
        info "unattended-upgrades disabled"
    fi
}

motd_news_off() {
    if [ -f /etc/default/motd-news ]; then
        set_kv /etc/default/motd-news ENABLED 0
    fi
    # update-motd scripts that reach the network (release checks, news, ESM, updates).
    local script
    for script in 50-motd-news 90-updates-available 91-release-upgrade 91-contract-ua-esm-status \
        95-hwe-eol 98-fsck-at-reboot-disabled 80-livepatch; do
        if [ -f "/etc/update-motd.d/$script" ]; then
            chmod a-x "/etc/update-motd.d/$script"
            info "disabled /etc/update-motd.d/$script"
        fi
    done
}

cloud_init_quiet() {
    # Read by cloud-init when the image boots on EC2/VMs; inert elsewhere.
    write_file /etc/cloud/cloud.cfg.d/99-imagebake.cfg 0644 <<'CONF'
# imagebake: no repository rewrites, package runs or resolver changes at boot.
# The first-boot agent owns /etc/imagebake/hosts and the resolver.
apt_preserve_sources_list: true
apt:
  preserve_sources_list: true
apt_update: false
apt_upgrade: false
package_update: false
package_upgrade: false
package_reboot_if_required: false
apt_mirror_search_dns: false
manage_etc_hosts: localhost
manage_resolv_conf: false
CONF
}

ntp_setup() {
    if in_container; then
        info "container: the host keeps the clock"
        return 0
    fi
    if ! on_aws; then
        info "not AWS: keeping the distribution's NTP settings"
        return 0
    fi
    if [ -f /etc/default/ntpdate ]; then
        # trusty runs ntpdate from if-up.d against ntp.ubuntu.com.
        set_kv /etc/default/ntpdate NTPDATE_USE_NTP_CONF no
        set_kv /etc/default/ntpdate NTPSERVERS "\"$AWS_NTP\""
    fi
    if [ -f /etc/ntp.conf ]; then
        sed -i -r 's/^(server|pool)[[:space:]]/#&/' /etc/ntp.conf
        printf 'server %s prefer iburst minpoll 4 maxpoll 4\n' "$AWS_NTP" >>/etc/ntp.conf
    fi
    if [ -f /etc/chrony/chrony.conf ]; then
        sed -i -r 's/^(server|pool|sourcedir)[[:space:]]/#&/' /etc/chrony/chrony.conf
        printf 'server %s prefer iburst minpoll 4 maxpoll 4\n' "$AWS_NTP" >>/etc/chrony/chrony.conf
    fi
    if [ -x /lib/systemd/systemd-timesyncd ]; then
        write_file /etc/systemd/timesyncd.conf.d/imagebake.conf 0644 <<CONF
# imagebake: Amazon Time Sync Service only
[Time]
NTP=$AWS_NTP
FallbackNTP=
CONF
    fi
    info "NTP: $AWS_NTP (Amazon Time Sync Service)"
}

# enable_dnsmasq yes|no: at boot, under whichever init the image has.
dnsmasq_at_boot() {
    local want=$1
    if [ -f /etc/init.d/dnsmasq ] && command -v update-rc.d >/dev/null 2>&1; then
        if [ "$want" = yes ]; then
            update-rc.d dnsmasq defaults >/dev/null 2>&1 || true
            update-rc.d dnsmasq enable >/dev/null 2>&1 || warn "update-rc.d dnsmasq enable failed"
        else
            update-rc.d dnsmasq disable >/dev/null 2>&1 || warn "update-rc.d dnsmasq disable failed"
        fi
    fi
    local unit=/lib/systemd/system/dnsmasq.service
    local link=/etc/systemd/system/multi-user.target.wants/dnsmasq.service
    if [ -f "$unit" ]; then
        if [ "$want" = yes ]; then
            mkdir -p "$(dirname "$link")"
            ln -sfn "$unit" "$link"
        else
            rm -f "$link"
        fi
    fi
}

dnsmasq_master() {
    mkdir -p /etc/imagebake
    [ -f /etc/imagebake/hosts ] || printf '# cluster hosts, maintained by imagebake-agent\n' >/etc/imagebake/hosts
    chmod 0644 /etc/imagebake/hosts
    # In /etc/dnsmasq.conf itself so every start method reads it: the init
    # script, the systemd helper and the agent's direct start in containers.
    local conf=/etc/dnsmasq.conf
    touch "$conf"
    sed -i "\\|^$DNSMASQ_BEGIN\$|,\\|^$DNSMASQ_END\$|d" "$conf"
    cat >>"$conf" <<CONF
$DNSMASQ_BEGIN
# The cluster's resolver: every interface, cached, cluster names from the agent.
# except-interface also stops Debian's helper from adding --local-service.
except-interface=imagebake-none
bind-dynamic
cache-size=1000
domain-needed
bogus-priv
# Cluster names come only from the agent's file: /etc/hosts holds this machine's
# own name on a loopback address (127.0.1.1), which must never reach the nodes.
no-hosts
addn-hosts=/etc/imagebake/hosts
# Upstream: the resolver the machine had before the agent pointed it at 127.0.0.1.
resolv-file=/etc/imagebake/resolv.upstream
$DNSMASQ_END
CONF
    # Upstream: resolv-file above, which the agent fills from the original
    # resolver. Where resolvconf runs (trusty) the init script also hands
    # dnsmasq resolvconf's list without 127.0.0.1 (-r /var/run/dnsmasq/resolv.conf)
    # and registers 127.0.0.1 for the master itself; dnsmasq uses whichever
    # file changed last, and both hold the original resolver.
    set_kv /etc/default/dnsmasq ENABLED 1
    dnsmasq --test --conf-file="$conf" >/dev/null 2>&1 || fatal "dnsmasq rejects $conf: $(dnsmasq --test --conf-file="$conf" 2>&1 | tail -n 1)"
    dnsmasq_at_boot yes
    info "dnsmasq: enabled (addn-hosts=/etc/imagebake/hosts)"
}

dnsmasq_node() {
    set_kv /etc/default/dnsmasq ENABLED 0
    dnsmasq_at_boot no
    info "dnsmasq: installed, disabled (nodes resolve through the master)"
}

resolver_base() {
    if is_trusty && [ -d /etc/resolvconf/resolv.conf.d ]; then
        # resolvconf builds resolv.conf from resolv.conf.d/{head,base,tail} and the
        # DHCP client's servers; nothing baked in may point elsewhere.
        : >/etc/resolvconf/resolv.conf.d/base
        : >/etc/resolvconf/resolv.conf.d/tail
        [ -f /etc/resolvconf/resolv.conf.d/head ] || : >/etc/resolvconf/resolv.conf.d/head
        sed -i '/^nameserver/d' /etc/resolvconf/resolv.conf.d/head
        info "resolvconf: head/base/tail carry no nameserver"
    fi
}

main() {
    verify_system
    periodic_apt_off
    motd_news_off
    cloud_init_quiet
    ntp_setup
    resolver_base
    if [ "$IMAGEBAKE_ROLE" = master ]; then
        dnsmasq_master
    else
        dnsmasq_node
    fi
}

main "$@"
