#!/usr/bin/env bash
# Install what the integration-test sandbox (tests/sandbox/sandbox.sh) needs on Debian 12.
#
#   tests/sandbox/install.sh           everything the test suite needs (tests/run.sh, CI)
#   tests/sandbox/install.sh --demo    only what tests/demo.sh needs (DEMO_PACKAGES)
#
# Idempotent and non-interactive: run as root on a fresh CI machine or again on a
# developer machine; it only calls apt-get when a package is actually missing, and it is
# silent when there is nothing to do. While apt-get works it prints a line every few seconds
# with how many packages are done and an estimate of what is left. Other parts of the test
# suite may append packages to SANDBOX_PACKAGES below.
set -euo pipefail

# What the demo needs (tests/demo.sh): the sandbox's servers, the tools sandbox.sh calls,
# and what the Ansible install role needs to put the package on a host.
#   pebble bind9 bind9-utils unbound dnsutils   the CA, the primary and secondary, the resolver, dig
#   openssl curl                                sandbox.sh makes Pebble's certificate, fetches its roots
#   python3-venv                                tests/install-python.sh makes .venv/ for ansible-core
#   python3-apt adduser                         Ansible's apt module installs the package with
#                                               python3-apt; its postinst makes the group with adduser
#   util-linux                                  flock and setsid for sandbox.sh (in every Debian but slim images)
DEMO_PACKAGES=(pebble bind9 bind9-utils unbound dnsutils openssl curl python3-venv
    python3-apt adduser util-linux)

# Everything the tests need: the demo's packages, and what only tests use.
# The services of tests/sandbox/services.sh (what fleetcert's certificates end up in):
#   nginx                     a TLS server to probe and reload
#   prometheus-node-exporter  the textfile collector that reads fleetcert.prom
#   prometheus                only for promtool (check metrics, test rules); its server
#                             never runs (12 packages, mostly JavaScript for its web UI)
#   zookeeper                 a Java service reading a PKCS#12 keystore; it depends on
#                             default-jre (the full JRE, with GTK) and ~40 Java libraries
#   default-jre-headless      java and keytool
#   faketime                  a skewed clock for the BADTIME test of dynamic update, and for
#                             the DNSSEC test whose signatures have expired (tests/integration/dnssec.rs)
# bind9-utils also brings dnssec-keygen: the wrong trust anchor of `sandbox.sh trust-anchor`.
# puppet: the hiera export is checked with a real puppet lookup (tests/integration/hiera.rs).
# The Debian package (tests/integration/package.rs): lintian checks it, man-db answers
# `man -w`, systemd's systemd-analyze verifies its units.
# The crash and gap tests (tests/integration/{crash,gaps}.rs): util-linux for setpriv (read a
# key as nobody), prlimit (a write that fails) and flock (hold the host lock), e2fsprogs for
# chattr (a file rename cannot replace); both are in every Debian system but slim images.
# LXD (tests/sandbox/lxd.sh, tests/integration/lxd.rs): Debian's lxd 5.0.2 daemon and its
# lxc client, run as private daemons on loopback (no containers, storage or bridge); the
# policy-rc.d below keeps its maintainer scripts from starting the system's lxd.
SANDBOX_PACKAGES=("${DEMO_PACKAGES[@]}" puppet
    nginx prometheus-node-exporter prometheus zookeeper default-jre-headless faketime
    lintian man-db systemd
    e2fsprogs
    lxd lxd-client)

export DEBIAN_FRONTEND=noninteractive

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

wanted=("${SANDBOX_PACKAGES[@]}")
case ${1:-} in
    --demo) wanted=("${DEMO_PACKAGES[@]}") ;;
    '') ;;
    *) die "unknown argument ${1} (expected nothing or --demo)" ;;
esac

command -v dpkg-query >/dev/null || die "dpkg-query not found: this script supports Debian only"

missing=()
for pkg in "${wanted[@]}"; do
    # "install ok installed" is the only state in which the package is really usable;
    # "deinstall"/"half-configured" etc. count as missing and get (re)installed.
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
    [[ $(id -u) -eq 0 ]] || die "must run as root to install: ${missing[*]}"
    # The sandbox runs its own named/unbound on high ports; the distribution's services
    # are not wanted (on a machine with an init system bind9 and unbound would also
    # fight over port 53). A temporary policy-rc.d stops the maintainer scripts from
    # starting them; an existing policy-rc.d is left alone.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    log=$(mktemp)
    # shellcheck source=tests/progress.sh
    source "$(dirname "${BASH_SOURCE[0]}")/../progress.sh"
    printf '    apt-get: installing %s (and what they depend on)\n' "${missing[*]}"
    # 20 s on a machine whose package lists are fresh; 60 s is typical on a new one.
    if ! with_progress "apt-get update" 60 0 '^$' "$log" -- apt-get update -q; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        die "apt-get update failed (see above); check the machine's apt sources and network"
    fi
    # Each package is fetched, unpacked and set up: three lines in the log.
    count=$(apt-get -s install --no-install-recommends "${missing[@]}" 2>/dev/null | grep -c '^Inst ' || true)
    printf '    apt-get: %d packages to install\n' "$count"
    if ! with_progress "apt-get install" $((count * 2)) $((count * 3)) '^(Get:|Unpacking |Setting up )' "$log" -- \
        apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        die "apt-get failed installing: ${missing[*]}"
    fi
    rm -f "$log"
fi

# On a machine with AppArmor enforcing (a Debian 12 VM, not a container), the packaged
# profiles confine /usr/sbin/named and /usr/sbin/unbound to /etc/bind, /var/lib/bind, ...
# so the sandbox's daemons could not read their configuration under the temporary
# directory. Allow the temporary directory through the profiles' local override files
# (loaded by the packaged profiles), and reload those profiles. No-op without AppArmor.
if [[ -r /sys/module/apparmor/parameters/enabled ]] &&
    [[ $(cat /sys/module/apparmor/parameters/enabled) == Y ]] &&
    command -v apparmor_parser >/dev/null; then
    tmp_root=${SANDBOX_TMP_ROOT:-${TMPDIR:-/tmp}}
    tmp_root=${tmp_root%/}
    marker="# fleetcert test sandbox"
    for profile in usr.sbin.named usr.sbin.unbound; do
        [[ -f /etc/apparmor.d/$profile ]] || continue
        local_file=/etc/apparmor.d/local/$profile
        if ! grep -qF "$marker $tmp_root" "$local_file" 2>/dev/null; then
            [[ $(id -u) -eq 0 ]] || die "must run as root to let AppArmor's $profile profile read $tmp_root"
            mkdir -p /etc/apparmor.d/local
            printf '%s %s\n%s/ r,\n%s/** rwkl,\n' "$marker" "$tmp_root" "$tmp_root" "$tmp_root" >>"$local_file"
            apparmor_parser -r -T -W "/etc/apparmor.d/$profile" >/dev/null 2>&1 ||
                die "could not reload AppArmor profile $profile after allowing $tmp_root"
        fi
    done
fi
