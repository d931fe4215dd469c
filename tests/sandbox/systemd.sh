#!/usr/bin/env bash
# A real systemd as PID 1 for unit tests, booted over a throwaway copy of this machine's `/`:
#
#   systemd.sh start DIR --tree STAGING [--bind FILE=PATH]... [--ports N] [--parent PID]
#   systemd.sh stop DIR     (poweroff, wait, kill what is left, remove its cgroups)
#   systemd.sh status DIR
#
# systemd runs in new pid, mount, uts, ipc and cgroup namespaces (the network namespace is
# shared, so the guest reaches the sandbox's servers on 127.0.0.1), over an overlay of `/`
# whose upper directory is a tmpfs that disappears with the mount namespace: nothing the
# guest writes reaches this machine's files. STAGING is copied into that upper directory
# before boot (unit files, drop-ins, binaries, configs); `@PORTk@` in its text files under
# etc/ becomes the k-th of the N loopback ports reserved for the guest's services. --bind
# puts a file of the host at PATH in the guest, read-only, without copying it (a 170 MB
# debug build of fleetcert as /usr/bin/fleetcert), or a Unix socket of a daemon on the host
# (an LXD's unix.socket as the guest's /var/lib/lxd/unix.socket).
#
# What keeps the host safe (docs/dev/sandbox.md): the guest's /dev is a tmpfs with device nodes
# of its own (mknod, not bind mounts of the host's: what systemd does to its /dev/null or a
# console must not happen to the host's), and no console at all; /proc is its own, /sys is
# read-only, /sys/fs/cgroup a tmpfs with the guest's own cgroup2 and name=systemd
# hierarchies, rooted (cgroup namespace) in cgroups made for this guest; /run and /tmp are
# fresh tmpfs (systemd's boot clean-up empties the guest's /tmp, not the host's). The
# host's *.wants links are dropped in the overlay, and units that would change the kernel or
# the clock are masked, so only what STAGING enables starts.
#
# `start` returns once `systemctl is-system-running` says running (or degraded, with the
# failed units in logs/start.log) and writes DIR/systemd.env: SYSTEMD_PID (PID 1 of the
# guest, as this machine sees it: `nsenter -t PID -a COMMAND` runs COMMAND in the guest),
# PORTk, CGROUP_SYSTEMD and CGROUP_UNIFIED (the guest's cgroup directories on this machine,
# gone once `stop` has proved nothing of the guest is left).
#
# Environment: SYSTEMD_TIMEOUT (seconds to wait for boot or poweroff, default 300).
set -euo pipefail

PATH=$PATH:/usr/sbin:/sbin
SELF=$(readlink -f "${BASH_SOURCE[0]}")
PROG=systemd.sh
COMMANDS=(status)
TIMEOUT=${SYSTEMD_TIMEOUT:-300}
# Units that would change the host's kernel settings, modules or clock, or its network.
MASK=(systemd-sysctl.service systemd-binfmt.service systemd-modules-load.service
    systemd-timesyncd.service systemd-networkd.service systemd-networkd.socket
    systemd-resolved.service systemd-udevd.service systemd-udevd-control.socket
    systemd-udevd-kernel.socket systemd-udev-trigger.service systemd-hwdb-update.service
    systemd-random-seed.service systemd-remount-fs.service systemd-journal-flush.service
    proc-sys-fs-binfmt_misc.automount sys-kernel-config.mount sys-kernel-debug.mount
    sys-kernel-tracing.mount sys-fs-fuse-connections.mount dev-hugepages.mount
    dev-mqueue.mount systemd-firstboot.service getty.target console-getty.service
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer)
# shellcheck source=tests/sandbox/lib.sh
source "${SELF%/*}/lib.sh"

usage() {
    sed -n '4,6s/^# \{0,1\}//p' "$SELF" >&2
    exit 2
}

describe() { printf 'systemd (PID 1 of the guest: %s)' "$(guest_pid || echo none)"; }

# The guest's PID 1 as this machine sees it: the child of `unshare --fork`.
guest_pid() {
    local outer child
    outer=$(pid_of systemd) || return 1
    # The file has no newline at its end: read says EOF, and has read the pid all the same.
    read -r child _ 2>/dev/null </proc/"$outer"/task/"$outer"/children || true
    [[ -n ${child:-} ]] && printf '%s\n' "$child"
}

cgroup_dirs() {
    local name=fleetcert-${DIR##*/}
    printf '%s\n' "/sys/fs/cgroup/systemd/$name" "/sys/fs/cgroup/unified/$name"
}

# --- inside the new namespaces (PID 1 until it execs systemd) ----------------------------

cmd_boot() {
    local ns=$DIR/ns root
    exec >>"$DIR/logs/boot.log" 2>&1
    # Nothing mounted here propagates to the host.
    mount --make-rprivate /
    mount -t tmpfs -o mode=0755 fleetcert-guest "$ns"
    mkdir "$ns/upper" "$ns/work" "$ns/root"
    cp -a "$DIR/tree/." "$ns/upper/"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$ns/upper,workdir=$ns/work" "$ns/root"
    root=$ns/root
    local bind source target
    while IFS= read -r bind; do
        [[ -n $bind ]] || continue
        source=${bind%%=*} target=$root${bind#*=}
        mkdir -p "${target%/*}"
        [[ -e $target ]] || : >"$target"
        mount --bind "$source" "$target"
        mount -o remount,bind,ro "$target"
    done <"$DIR/binds"
    mount -t proc proc "$root/proc"
    mount --bind /sys "$root/sys"
    mount -o remount,bind,ro "$root/sys"
    mount -t tmpfs -o mode=0755 cgroup "$root/sys/fs/cgroup"
    mkdir "$root/sys/fs/cgroup/unified" "$root/sys/fs/cgroup/systemd"
    mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup/unified"
    mount -t cgroup -o none,name=systemd,xattr cgroup "$root/sys/fs/cgroup/systemd"
    # Device nodes of the guest's own: never the host's inodes, and no console.
    mount -t tmpfs -o mode=0755 dev "$root/dev"
    local node
    for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
        IFS=: read -r name major minor <<<"$node"
        mknod -m 0666 "$root/dev/$name" c "$major" "$minor"
    done
    mkdir "$root/dev/shm" "$root/dev/pts"
    mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
    ln -s pts/ptmx "$root/dev/ptmx"
    ln -s /proc/self/fd "$root/dev/fd"
    ln -s /proc/self/fd/0 "$root/dev/stdin"
    ln -s /proc/self/fd/1 "$root/dev/stdout"
    ln -s /proc/self/fd/2 "$root/dev/stderr"
    mount -t tmpfs -o mode=0755 run "$root/run"
    mount -t tmpfs -o mode=1777 tmp "$root/tmp"
    mkdir -p "$root/.oldroot"
    cd "$root"
    pivot_root . .oldroot
    umount -l /.oldroot
    cd /
    exec env -i container=other SYSTEMD_GETTY_AUTO=0 /lib/systemd/systemd --unit=basic.target \
        </dev/null
}

# --- on the host -------------------------------------------------------------------------

# DIR/tree: STAGING with @PORTk@ filled in, the host's *.wants links dropped (whiteouts in
# the overlay) and the units of MASK masked.
prepare_tree() {
    local staging=$1 k unit file wants
    mkdir -p "$DIR/tree"
    # A directory of the tree where the host has a link (Debian's merged /usr: /lib ->
    # usr/lib) would replace the link in the overlay and hide everything behind it.
    while IFS= read -r -d '' file; do
        file=${file#"$staging"}
        [[ ! -L $file ]] || die "the tree has a directory $file where the host has a link to $(readlink "$file"): put it there"
    done < <(find "$staging" -mindepth 1 -type d -print0)
    cp -a "$staging/." "$DIR/tree/"
    if [[ -d $DIR/tree/etc ]]; then
        while IFS= read -r -d '' file; do
            grep -Iq . "$file" || continue
            for ((k = 1; k <= ${#PORTS[@]}; k++)); do
                sed -i "s/@PORT$k@/${PORTS[k - 1]}/g" "$file"
            done
        done < <(find "$DIR/tree/etc" -type f -print0)
    fi
    mkdir -p "$DIR/tree/etc/systemd/system"
    for wants in /etc/systemd/system/*.wants /etc/systemd/system/*.requires; do
        [[ -d $wants ]] || continue
        for unit in "$wants"/*; do
            # A staged link of the same name stays; everything else of the host's goes.
            [[ -e $DIR/tree$unit || -L $DIR/tree$unit ]] && continue
            mkdir -p "$DIR/tree$wants"
            mknod "$DIR/tree$unit" c 0 0
        done
    done
    for unit in "${MASK[@]}"; do
        [[ -e $DIR/tree/etc/systemd/system/$unit ]] ||
            ln -s /dev/null "$DIR/tree/etc/systemd/system/$unit"
    done
}

# One look at the guest, for `await`: 0 once systemd says it is running (or degraded, its
# failed units then in the start log), 1 before. The state in BOOT_STATE.
booted() {
    local pid
    pid=$(guest_pid) || return 1
    BOOT_STATE=$(nsenter -t "$pid" -a systemctl is-system-running 2>/dev/null || true)
    case $BOOT_STATE in
    running) return 0 ;;
    degraded)
        {
            echo "booted degraded; failed units:"
            nsenter -t "$pid" -a systemctl --failed --no-legend --plain 2>&1 || true
        } >>"$DIR/logs/start.log"
        return 0
        ;;
    *) return 1 ;;
    esac
}

# report_failure NAME REASON: what the guest did, its last state and its boot log's tail.
report_failure() {
    printf '%s: the guest %s (state: %s); from %s/logs/boot.log:\n' "$PROG" "$2" \
        "${BOOT_STATE:-none}" "$DIR" >&2
    tail -n 20 "$DIR/logs/boot.log" | sed 's/^/    /' >&2
}

wait_booted() {
    await systemd "finish booting" booted
}

write_env_file() {
    local tmp=$DIR/systemd.env.tmp k
    {
        printf '%s\n' "SYSTEMD_SCRIPT=$SELF" "SYSTEMD_DIR=$DIR" "SYSTEMD_PID=$(guest_pid)" \
            "STARTUP_MS=$STARTUP_MS" "BOOT_LOG=$DIR/logs/boot.log" \
            "CGROUP_SYSTEMD=$(cgroup_dirs | sed -n 1p)" "CGROUP_UNIFIED=$(cgroup_dirs | sed -n 2p)"
        for ((k = 1; k <= ${#PORTS[@]}; k++)); do
            printf 'PORT%s=%s\n' "$k" "${PORTS[k - 1]}"
        done
    } >"$tmp"
    mv "$tmp" "$DIR/systemd.env"
}

check_installed() {
    local cmd
    for cmd in unshare nsenter mount pivot_root mknod flock setsid /lib/systemd/systemd; do
        command -v "$cmd" >/dev/null ||
            die "$cmd not found: run tests/sandbox/install.sh (as root) first"
    done
    [[ $(id -u) -eq 0 ]] || die "booting systemd in namespaces needs root"
    [[ -d /sys/fs/cgroup/systemd && -d /sys/fs/cgroup/unified ]] ||
        die "wants the hybrid cgroup layout (/sys/fs/cgroup/systemd and unified) of this machine"
}

cmd_start() {
    set_dir "${1:-}" create
    shift
    local staging='' parent='' nports=0 binds=()
    while (($# > 0)); do
        [[ -n ${2:-} ]] || die "option '$1' of start wants a value"
        case $1 in
        --tree) staging=$2 ;;
        --bind)
            [[ $2 =~ ^(/[^=]+)=(/[^=]+)$ ]] &&
                [[ -f ${BASH_REMATCH[1]} || -S ${BASH_REMATCH[1]} ]] ||
                die "--bind wants FILE=PATH, an existing file or socket and an absolute path, got '$2'"
            binds+=("$2")
            ;;
        --ports)
            [[ $2 =~ ^[0-9]$ ]] || die "--ports wants 0..9, got '$2'"
            nports=$2
            ;;
        --parent)
            [[ $2 =~ ^[0-9]+$ ]] || die "--parent wants a process id, got '$2'"
            parent=$2
            ;;
        *) usage ;;
        esac
        shift 2
    done
    [[ -d $staging ]] || die "start wants --tree DIR, the files to put into the guest"
    begin_start
    mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/ns"
    [[ -z $parent ]] || start_watchdog "$parent"
    PORTS=()
    if ((nports > 0)); then
        reserve_ports "$nports"
        PORTS=("${RESERVED[@]}")
    fi
    printf '%s\n' "${PORTS[@]}" >"$DIR/ports"
    printf '%s\n' "${binds[@]}" >"$DIR/binds"
    prepare_tree "$staging"
    step "tree prepared"

    # The guest's cgroups: its namespace is rooted there, so what it makes stays below them
    # and `stop` can prove nothing is left.
    local cg
    for cg in $(cgroup_dirs); do mkdir -p "$cg"; done
    # The launcher joins them, then becomes unshare; --kill-child: if unshare is killed, the
    # guest's PID 1 (and with it every process of the guest) is killed too.
    # shellcheck disable=SC2016
    spawn systemd "$DIR/logs/boot.log" setsid sh -c 'dir=$1; shift
        for cg in "$@"; do echo $$ >"$cg/cgroup.procs"; done
        exec unshare --fork --pid --mount --uts --ipc --cgroup --kill-child "$0" __boot "$dir"' \
        "$SELF" "$DIR" $(cgroup_dirs)
    if ! wait_booted; then
        stop_guest
        exit 1
    fi
    now_ms
    STARTUP_MS=$((NOW_MS - T0))
    step "booted"
    write_env_file
    echo running >"$DIR/state"
}

# Poweroff (SIGRTMIN+4 to the guest's PID 1), wait for the guest to end, KILL what is left,
# remove its cgroups.
stop_guest() {
    local pid deadline cg left
    if pid=$(guest_pid); then
        kill -s RTMIN+4 "$pid" 2>/dev/null || true
        now_ms
        deadline=$((NOW_MS + TIMEOUT * 1000))
        while running systemd; do
            now_ms
            if ((NOW_MS > deadline)); then
                printf '%s: the guest did not power off within %ss: killed\n' "$PROG" "$TIMEOUT" \
                    >>"$DIR/logs/start.log"
                break
            fi
            sleep 0.1
        done
    fi
    kill_servers systemd
    # The kernel empties a pid namespace whose PID 1 died; wait until the cgroups say so.
    now_ms
    deadline=$((NOW_MS + 30000))
    for cg in $(cgroup_dirs); do
        [[ -d $cg ]] || continue
        while left=$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null) && [[ -n $left ]]; do
            now_ms
            ((NOW_MS < deadline)) || die "processes left in $cg: $left"
            # shellcheck disable=SC2086
            kill -KILL $left 2>/dev/null || true
            sleep 0.05
        done
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

cmd_stop() {
    [[ -e $DIR/state ]] || return 0
    lock_dir
    stop_guest
    stop_watchdog
    local ports=()
    mapfile -t ports <"$DIR/ports" 2>/dev/null || true
    release_ports "${ports[@]}"
    echo stopped >"$DIR/state"
}

cmd_status() {
    server_status systemd
}

if [[ ${1:-} == __boot ]]; then
    DIR=$2
    cmd_boot
fi
dispatch "$@"
