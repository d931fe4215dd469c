#!/usr/bin/env bash
# Debian's LXD 5.0 daemons on 127.0.0.1, each in a directory of its own:
#
#   lxd.sh start DIR [--cluster N] [--parent PID]
#   lxd.sh restart DIR [MEMBER]   (shut down and start again on the same port: one member,
#                                  or every member at once; waits until each serves HTTPS)
#   lxd.sh stop DIR               (shut everything down, unmount, free the ports)
#   lxd.sh status DIR
#
# Without --cluster: one server on its own (member1), its API on 127.0.0.1:PORT. With
# --cluster N: member1 bootstraps a cluster and members 2..N join it, each with its own
# HTTPS port (core.https_address, also the cluster address). No containers, storage pool
# or bridge: what the tests need is the API certificate each member serves.
#
# Everything lives below DIR: each member's LXD_DIR (DIR/memberK/lxd), the lxc client's
# LXD_CONF (DIR/conf), logs. Nothing of the system's LXD (/var/lib/lxd) is touched. `start`
# writes DIR/lxd.env once every member answers: MEMBERS, CLUSTERED, LXD_CONF, and per member
# MEMBERK_DIR (its LXD_DIR), MEMBERK_ADDRESS, MEMBERK_LXC (an lxc bound to that member) and
# MEMBERK_RESTART (runs `restart DIR K`). See docs/dev/sandbox.md.
#
# Environment: LXD_TIMEOUT (seconds to wait for a daemon, default 300: a guard against a hang).
set -euo pipefail

PATH=$PATH:/usr/sbin:/sbin
SELF=$(readlink -f "${BASH_SOURCE[0]}")
PROG=lxd.sh
COMMANDS=(restart status)
TIMEOUT=${LXD_TIMEOUT:-300}
START_ATTEMPTS=5
# shellcheck source=tests/sandbox/lib.sh
source "${SELF%/*}/lib.sh"

usage() {
    sed -n '4,8s/^# \{0,1\}//p' "$SELF" >&2
    exit 2
}

# --- one member --------------------------------------------------------------------------

member_dir() { printf '%s/member%s/lxd' "$DIR" "$1"; }

# The environment every lxd and lxc call of member K runs with. A new daemon at once fetches
# instance types from images.linuxcontainers.org: the proxy on a closed loopback port makes
# that fail at once instead of after a DNS timeout (LXD never proxies loopback, so the
# cluster's own traffic is unaffected). LXD_CONF keeps lxc from writing under the home.
member_env() {
    MEMBER_ENV=(env "LXD_DIR=$(member_dir "$1")" "LXD_CONF=$DIR/conf"
        https_proxy=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9
        HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 no_proxy= NO_PROXY=)
}

# lxc K ARGS...: the client, bound to member K.
lxc_on() {
    local k=$1
    shift
    member_env "$k"
    "${MEMBER_ENV[@]}" lxc "$@"
}

launch() {
    local k=$1
    member_env "$k"
    mkdir -p "$(member_dir "$k")"
    # The daemon's command line names DIR (--logfile), which is how `stop` recognises it. A
    # session of its own, as a daemon that systemd starts: a `restart` run as a
    # certificate's reload is in the reload's process group, which fleetcert kills when the
    # reload ends (what it left behind); the daemon must not go with it.
    spawn "member$k" "$DIR/logs/member$k.out" \
        setsid "${MEMBER_ENV[@]}" lxd --group root --logfile "$DIR/logs/member$k.log"
}

# report_failure NAME REASON: NAME (memberK) and the tail of its log and output.
report_failure() {
    local log=$DIR/logs/$1.log
    printf '%s: %s %s; from %s:\n' "$PROG" "$1" "$2" "$log" >&2
    { tail -n 12 "$log" "$DIR/logs/$1.out" 2>/dev/null || true; } | sed 's/^/    /' >&2
}

# Whether member K's daemon takes API requests on its unix socket (`lxd waitready`, in
# short slices so that a daemon that died is noticed at once).
api_ready() {
    member_env "$1"
    "${MEMBER_ENV[@]}" lxd waitready --timeout 2 >/dev/null 2>&1 && return 0
    return 1
}

# Whether a TLS handshake on 127.0.0.1:PORT gives a certificate.
https_ready() {
    timeout 10 openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null |
        grep -q -- '-----BEGIN CERTIFICATE-----' && return 0
    return 1
}

# Wait until member K's daemon takes API requests.
wait_api() {
    await "member$1" "take API requests" api_ready "$1"
}

# Wait until member K serves its API certificate on PORT: 0 once it does, 1 when it does
# not (reported).
wait_https() {
    await "member$1" "serve HTTPS on 127.0.0.1:$2" https_ready "$2"
}

# `lxd init --preseed` on member K with the YAML on stdin; its error in $PRESEED_ERROR.
preseed() {
    local k=$1
    member_env "$k"
    PRESEED_ERROR=$("${MEMBER_ENV[@]}" lxd init --preseed 2>&1 >/dev/null) && return 0
    return 1
}

# Stop the given members as systemd stops lxd.service (KillMode=process): SIGTERM to the
# daemon, which leaves instances running and exits (`lxd shutdown` would also wait for the
# other cluster members, 6 s and more). kill_servers KILLs what is left after 5 s. Then
# unmount what a killed daemon left mounted (tmpfs at LXD_DIR/shmounts and LXD_DIR/devlxd).
shutdown_members() {
    local k names=()
    for k in "$@"; do names+=("member$k"); done
    kill_servers "${names[@]}"
    unmount_below "$@"
}

unmount_below() {
    local k dir mount
    for k in "$@"; do
        dir=$(member_dir "$k")
        # Field 5 of mountinfo is the mount point; deepest first.
        while read -r mount; do
            umount -l "$mount" 2>/dev/null || true
        done < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    done
}

# --- the cluster -------------------------------------------------------------------------

# A join token for member K, made on member 1: `lxc cluster add` prints it on its last line.
join_token() {
    local k=$1 out
    out=$(lxc_on 1 cluster add "member$k" 2>&1) || die "lxc cluster add member$k failed: $out"
    printf '%s\n' "${out##*$'\n'}"
}

# Bring member K into service on PORT: the server on its own, the cluster's first member, or
# a joining one. 0 when it serves, 2 when the port was taken (the caller retries with
# another), 1 on any other failure.
configure_member() {
    local k=$1 port=$2 yaml
    if ((MEMBERS == 1)); then
        yaml="config:
  core.https_address: 127.0.0.1:$port"
    elif ((k == 1)); then
        yaml="config:
  core.https_address: 127.0.0.1:$port
cluster:
  server_name: member1
  enabled: true"
    else
        yaml="cluster:
  enabled: true
  server_name: member$k
  server_address: 127.0.0.1:$port
  cluster_token: $(join_token "$k")"
    fi
    if ! preseed "$k" <<<"$yaml"; then
        if [[ $PRESEED_ERROR == *"address already in use"* ]]; then
            # A join that failed left a pending token on member 1; revoke it for the retry.
            ((k == 1)) || lxc_on 1 cluster revoke-token "member$k" >/dev/null 2>&1 || true
            return 2
        fi
        printf '%s: member%s: lxd init --preseed failed: %s\n' "$PROG" "$k" "$PRESEED_ERROR" >&2
        return 1
    fi
    wait_https "$k" "$port"
}

write_wrappers() {
    local k
    for ((k = 1; k <= MEMBERS; k++)); do
        cat >"$DIR/member$k/lxc" <<EOF
#!/bin/sh
# lxc bound to member$k of $DIR
exec env LXD_DIR=$(member_dir "$k") LXD_CONF=$DIR/conf https_proxy=http://127.0.0.1:9 lxc "\$@"
EOF
        printf '#!/bin/sh\n# restart member%s of %s\nexec %s restart %s %s\n' "$k" "$DIR" \
            "$SELF" "$DIR" "$k" >"$DIR/member$k/restart"
        chmod 0755 "$DIR/member$k/lxc" "$DIR/member$k/restart"
    done
}

write_env_file() {
    local tmp=$DIR/lxd.env.tmp k
    {
        printf '%s\n' "LXD_SCRIPT=$SELF" "LXD_HOME=$DIR" "LXD_CONF=$DIR/conf" \
            "MEMBERS=$MEMBERS" "CLUSTERED=$( ((MEMBERS > 1)) && echo true || echo false)" \
            "STARTUP_MS=$STARTUP_MS"
        for ((k = 1; k <= MEMBERS; k++)); do
            printf '%s\n' "MEMBER${k}_DIR=$(member_dir "$k")" \
                "MEMBER${k}_ADDRESS=127.0.0.1:${PORTS[k]}" \
                "MEMBER${k}_LXC=$DIR/member$k/lxc" "MEMBER${k}_RESTART=$DIR/member$k/restart" \
                "MEMBER${k}_LOG=$DIR/logs/member$k.log"
        done
    } >"$tmp"
    mv "$tmp" "$DIR/lxd.env"
}

describe() {
    local k=${1#member}
    printf 'lxd member%s (127.0.0.1:%s)' "$k" "${PORTS[k]:-?}"
}

# --- commands ----------------------------------------------------------------------------

check_installed() {
    local cmd
    for cmd in lxd lxc openssl flock setsid timeout umount; do
        command -v "$cmd" >/dev/null ||
            die "$cmd not found: run tests/sandbox/install.sh (as root) first"
    done
    [[ $(id -u) -eq 0 ]] || die "LXD runs as root (it mounts tmpfs in its directory)"
}

cmd_start() {
    set_dir "${1:-}" create
    shift
    MEMBERS=1
    local parent=
    while (($# > 0)); do
        case $1 in
        --cluster)
            [[ ${2:-} =~ ^[2-9]$ ]] || die "--cluster wants a member count 2..9, got '${2:-}'"
            MEMBERS=$2
            ;;
        --parent)
            [[ ${2:-} =~ ^[0-9]+$ ]] || die "--parent wants a process id, got '${2:-}'"
            parent=$2
            ;;
        *) usage ;;
        esac
        shift 2
    done
    begin_start
    mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/conf"
    printf 'MEMBERS=%s\n' "$MEMBERS" >"$DIR/members.env"
    [[ -z $parent ]] || start_watchdog "$parent"

    # Every daemon at once: they are independent until they join.
    local k attempt rc
    declare -ga PORTS=()
    for ((k = 1; k <= MEMBERS; k++)); do launch "$k"; done
    for ((k = 1; k <= MEMBERS; k++)); do
        wait_api "$k" || start_failed
    done
    step "every daemon takes API requests"
    for ((k = 1; k <= MEMBERS; k++)); do
        for ((attempt = 1; ; attempt++)); do
            reserve_ports 1
            PORTS[k]=${RESERVED[0]}
            printf 'PORT%s=%s\n' "$k" "${PORTS[k]}" >>"$DIR/ports.env"
            rc=0
            configure_member "$k" "${PORTS[k]}" || rc=$?
            ((rc == 0)) && break
            ((rc == 2 && attempt < START_ATTEMPTS)) || start_failed
            printf 'member%s: port %s in use, retrying with another\n' "$k" "${PORTS[k]}" \
                >>"$DIR/logs/start.log"
        done
        step "member$k serves 127.0.0.1:${PORTS[k]}"
    done
    end_start "started $MEMBERS member(s)"
}

# A start that failed: stop what it started (under the lock `start` holds already).
start_failed() {
    stop_all
    exit 1
}

# MEMBERS and PORTS as `start` recorded them (as far as it got).
load() {
    [[ -r $DIR/members.env ]] || die "$DIR is not an LXD directory: was it started?"
    # Written by `start` from checked values.
    # shellcheck source=/dev/null
    source "$DIR/members.env"
    local line
    declare -ga PORTS=()
    while IFS= read -r line; do
        [[ $line =~ ^PORT([0-9]+)=([0-9]+)$ ]] && PORTS[BASH_REMATCH[1]]=${BASH_REMATCH[2]}
    done < <(cat "$DIR/ports.env" 2>/dev/null || true)
}

# restart DIR [K]: shut the member(s) down and start them again on the same ports. Every
# member of a cluster at once when no K is given (a cluster member waits for a quorum of
# the others at start-up, so they come up together).
cmd_restart() {
    local which=${1:-} k members=()
    lock_dir
    load
    if [[ -n $which ]]; then
        [[ $which =~ ^[0-9]+$ ]] && ((which >= 1 && which <= MEMBERS)) ||
            die "no member $which (1..$MEMBERS)"
        members=("$which")
    else
        for ((k = 1; k <= MEMBERS; k++)); do members+=("$k"); done
    fi
    now_ms
    T0=$NOW_MS
    shutdown_members "${members[@]}"
    for k in "${members[@]}"; do launch "$k"; done
    for k in "${members[@]}"; do
        wait_api "$k" && wait_https "$k" "${PORTS[k]}" || {
            shutdown_members "${members[@]}"
            exit 1
        }
    done
    now_ms
    printf 'restarted member(s) %s in %s ms\n' "${members[*]}" "$((NOW_MS - T0))" \
        >>"$DIR/logs/start.log"
}

cmd_stop() {
    [[ -e $DIR/state ]] || return 0
    lock_dir
    [[ -r $DIR/members.env ]] || {
        stop_watchdog
        echo stopped >"$DIR/state"
        return 0
    }
    load
    stop_all
}

stop_all() {
    local k members=()
    for ((k = 1; k <= MEMBERS; k++)); do members+=("$k"); done
    shutdown_members "${members[@]}"
    stop_watchdog
    release_ports "${PORTS[@]}"
    echo stopped >"$DIR/state"
}

cmd_status() {
    load
    local k
    for ((k = 1; k <= MEMBERS; k++)); do server_status "member$k"; done
}

dispatch "$@"
