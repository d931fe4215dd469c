# Shared by sandbox.sh, services.sh, lxd.sh and systemd.sh (sourced, not run): processes and
# their supervision (spawn, await), ports, the watchdog, the per-directory lock. Every function works on the directory in DIR; a script sets SELF
# (its own path, for the watchdog to call back), PROG (the prefix of its messages) and
# COMMANDS (its commands on an existing directory), and defines usage, describe, cmd_start,
# cmd_stop (also what the watchdog runs when the parent exits) and cmd_<command> for each of
# COMMANDS; `dispatch "$@"` then runs the one asked for.
#
# The port registry is shared by every sandbox and service directory of this user, so
# ports never collide between them. A reservation is stale once its owner's DIR/state says
# `stopped` (or the directory is gone).

# shellcheck shell=bash

# Ports are drawn below Linux's ephemeral range (32768-60999), so an outgoing connection of
# some other process can never be sitting on a port we picked.
PORT_MIN=10000
PORT_MAX=32767
# Reservations of ports between picking and binding, shared by every sandbox of this user.
PORT_REGISTRY=${TMPDIR:-/tmp}/fleetcert-sandbox-ports-$(id -u)

DIR=
DIR_LOCK=

die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}

# Milliseconds since the epoch in NOW_MS (no subshell: the wait loops call it often).
now_ms() {
    local t=${EPOCHREALTIME/./}
    NOW_MS=$((t / 1000))
}

# --- processes ---------------------------------------------------------------------------

# True when PID is a live process (not a zombie).
proc_alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    read -r stat 2>/dev/null </proc/"$pid"/stat || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# True when PID is a live process of this sandbox: every daemon we start carries DIR in
# its command line, which also protects against a recycled pid.
proc_ours() {
    local pid=$1 args
    proc_alive "$pid" || return 1
    mapfile -d '' args 2>/dev/null </proc/"$pid"/cmdline || return 1
    [[ "${args[*]}" == *"$DIR/"* || " ${args[*]} " == *" $DIR "* ]]
}

pid_of() {
    local pid
    read -r pid 2>/dev/null <"$DIR/pids/$1.pid" || return 1
    proc_ours "$pid" || return 1
    printf '%s\n' "$pid"
}

running() {
    local pid
    read -r pid 2>/dev/null <"$DIR/pids/$1.pid" && proc_ours "$pid"
}

# True while the server we just launched is alive (not a zombie). Unlike `running` it does
# not read the command line: in the middle of execve /proc/PID/cmdline can read empty, and
# on a busy machine a start-up check landed there and took a healthy named for dead. A pid
# we started a moment ago cannot have been recycled.
launched_alive() {
    local pid
    read -r pid 2>/dev/null <"$DIR/pids/$1.pid" && proc_alive "$pid"
}

# TERM the given servers, wait up to 5 s, then KILL what is left. Named shuts down in well
# under a second; the KILL is only for a wedged process.
kill_servers() {
    local name pid pids=() deadline
    for name in "$@"; do
        if pid=$(pid_of "$name"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    now_ms
    deadline=$((NOW_MS + 5000))
    while ((${#pids[@]} > 0)); do
        local alive=()
        for pid in "${pids[@]}"; do
            proc_ours "$pid" && alive+=("$pid")
        done
        pids=("${alive[@]}")
        ((${#pids[@]} > 0)) || break
        now_ms
        if ((NOW_MS > deadline)); then
            kill -KILL "${pids[@]}" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    for name in "$@"; do
        rm -f "$DIR/pids/$name.pid"
    done
}

# --- supervision -------------------------------------------------------------------------

# spawn NAME OUT CMD...: start CMD as the daemon NAME, its output to OUT (usually
# logs/NAME.log), its pid in pids/NAME.pid. logs/NAME.log is fresh for each launch (the one
# before is kept as NAME.previous.log), so the checks only ever see this run's messages.
# stdin/stdout/stderr are not inherited: a caller that reads our output (Rust's
# Command::output) would otherwise wait for the daemons to exit; nor is the directory's
# lock, which the daemon would hold forever.
spawn() {
    local name=$1 out=$2 log=$DIR/logs/$1.log
    shift 2
    [[ ! -s $log ]] || mv "$log" "$DIR/logs/$name.previous.log"
    "$@" </dev/null >>"$out" 2>&1 {DIR_LOCK}>&- &
    printf '%s\n' "$!" >"$DIR/pids/$name.pid"
}

# await NAME WHAT CHECK...: poll CHECK until it succeeds, while the daemon NAME lives. CHECK
# says 0 (done), 2 (its port was taken: returned as is, the caller may retry with another),
# 3 (a failure it reported itself) or 1 (not yet; a CHECK ends with `return 1` rather than
# passing on a tool's own status, which could read as 2 or 3). Returns 0, 2, or 1 when NAME
# exited or did not WHAT within TIMEOUT seconds, reported by the script's
# `report_failure NAME REASON`. TIMEOUT is a guard against a hang, not a timing: while it
# waits, the start log says every 10 s what it is still waiting for, so a slow start on a
# busy machine shows which server was slow.
await() {
    local name=$1 what=$2 deadline note nap=20 rc started
    shift 2
    now_ms
    started=$NOW_MS
    deadline=$((NOW_MS + TIMEOUT * 1000))
    note=$((NOW_MS + 10000))
    while true; do
        rc=0
        "$@" || rc=$?
        case $rc in
        0 | 2) return "$rc" ;;
        3) return 1 ;;
        *) ;;
        esac
        if ! launched_alive "$name"; then
            report_failure "$name" "exited before it would $what"
            return 1
        fi
        now_ms
        if ((NOW_MS > deadline)); then
            report_failure "$name" "did not $what within ${TIMEOUT}s"
            return 1
        fi
        if ((NOW_MS > note)); then
            step "still waiting for $name to $what ($(((NOW_MS - started) / 1000)) s)"
            note=$((NOW_MS + 10000))
        fi
        # 20 ms, then up to 100 ms: quick when idle, little load when many daemons start at
        # once on a small machine.
        sleep "0.$(printf '%03d' "$nap")"
        ((nap = nap * 2 > 100 ? 100 : nap * 2))
    done
}

# --- ports -------------------------------------------------------------------------------

# Pick N free ports and reserve them in PORT_REGISTRY (a directory per port, owned by this
# sandbox) so that sandboxes starting in parallel never pick the same one. A port is free
# when no TCP or UDP socket of any process uses it (read from /proc/net, no extra tools).
# The reservation lasts until `stop`, so a server stopped by `stop-server` gets its own port
# back. Everything happens under one lock: it takes a few milliseconds.
reserve_ports() {
    local n=$1 p h owner
    local -A used=()
    RESERVED=()
    mkdir -p "$PORT_REGISTRY"
    exec {lock}>"$PORT_REGISTRY/.lock"
    flock "$lock"
    while read -r h; do
        used[$((16#$h))]=1
    done < <(awk 'FNR > 1 { n = split($2, a, ":"); print a[n] }' \
        /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null)
    local tries=0
    while ((${#RESERVED[@]} < n)); do
        ((tries++ < 10000)) || die "no free port found between $PORT_MIN and $PORT_MAX"
        p=$((PORT_MIN + SRANDOM % (PORT_MAX - PORT_MIN + 1)))
        [[ -z ${used[$p]:-} ]] || continue
        used[$p]=1
        if [[ -d $PORT_REGISTRY/$p ]]; then
            # A reservation whose sandbox is gone or stopped is stale (e.g. a killed test
            # whose watchdog could not run): reclaim it.
            owner=$(cat "$PORT_REGISTRY/$p/owner" 2>/dev/null || true)
            if [[ -n $owner && -d $owner && $(cat "$owner/state" 2>/dev/null || true) != stopped ]]; then
                continue
            fi
            rm -rf "${PORT_REGISTRY:?}/$p"
        fi
        mkdir "$PORT_REGISTRY/$p"
        printf '%s\n' "$DIR" >"$PORT_REGISTRY/$p/owner"
        RESERVED+=("$p")
    done
    exec {lock}>&-
}

release_ports() {
    local p owner
    [[ -d $PORT_REGISTRY ]] || return 0
    for p in "$@"; do
        [[ $p =~ ^[0-9]+$ ]] || continue
        owner=$(cat "$PORT_REGISTRY/$p/owner" 2>/dev/null || true)
        [[ $owner == "$DIR" ]] && rm -rf "${PORT_REGISTRY:?}/$p"
    done
    return 0
}

# --- watchdog ----------------------------------------------------------------------------

start_watchdog() {
    local parent=$1
    # A session of its own, so it survives signals aimed at the caller's process group,
    # and `stop` can kill it together with its `tail`.
    setsid "$SELF" __watchdog "$DIR" "$parent" </dev/null >>"$DIR/logs/watchdog.log" 2>&1 \
        {DIR_LOCK}>&- &
    printf '%s\n' "$!" >"$DIR/pids/watchdog.pid"
}

cmd_watchdog() {
    local parent=$2
    printf '%s\n' "$$" >"$DIR/pids/watchdog.pid"
    # tail --pid polls once a second; no busy loop of our own.
    tail --pid="$parent" -f /dev/null || true
    printf '%s: parent process %s exited, stopping %s\n' "$PROG" "$parent" "$DIR"
    rm -f "$DIR/pids/watchdog.pid"
    SANDBOX_IN_WATCHDOG=1 cmd_stop
}

stop_watchdog() {
    local pid
    [[ -z ${SANDBOX_IN_WATCHDOG:-} ]] || return 0
    pid=$(cat "$DIR/pids/watchdog.pid" 2>/dev/null) || return 0
    if proc_ours "$pid"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/pids/watchdog.pid"
}

# --- commands ----------------------------------------------------------------------------

# The first steps of a script's `start` (services.sh, lxd.sh, systemd.sh): a fresh
# directory, locked, with what the script needs installed (its own check_installed); T0 for
# the step times, and the state the callers poll.
begin_start() {
    [[ -z $(ls -A "$DIR") ]] || die "$DIR is not empty: start wants a fresh directory"
    lock_dir
    check_installed
    now_ms
    T0=$NOW_MS
    echo starting >"$DIR/state"
}

# The last steps of a script's `start` (services.sh, lxd.sh): STARTUP_MS, the script's own
# write_wrappers and write_env_file, the state the callers poll, and "WHAT in N ms MORE" in
# the start log.
end_start() {
    now_ms
    STARTUP_MS=$((NOW_MS - T0))
    write_wrappers
    write_env_file
    echo running >"$DIR/state"
    printf '%s in %s ms%s\n' "$1" "$STARTUP_MS" "${2:+ $2}" >>"$DIR/logs/start.log"
}

# Commands on one sandbox run one at a time: a `stop` from the watchdog (the test process
# was killed while `start` was still running) waits for `start` to finish and then stops
# everything, instead of racing it and missing the servers started after it looked.
lock_dir() {
    exec {DIR_LOCK}>"$DIR/.lock"
    flock -w 120 "$DIR_LOCK" || die "$DIR is locked by another ${SELF##*/} for 120 s"
}

# set_dir DIR [create]: make DIR absolute (and create it for `start`).
set_dir() {
    [[ -n ${1:-} ]] || usage
    if [[ ${2:-} == create ]]; then
        mkdir -p "$1" 2>/dev/null || true
        [[ -d $1 ]] || die "cannot create directory $1"
    elif [[ ! -d $1 ]]; then
        # stop of a directory that is already gone: nothing to do.
        DIR=$1
        return 0
    fi
    DIR=$(cd "$1" && pwd -P)
    # sandbox.env is sourced by shells and read by Rust without any quoting.
    [[ $DIR =~ ^[A-Za-z0-9_./+-]+$ ]] ||
        die "directory path '$DIR' must consist of letters, digits and _ . / + - only"
}

# Timing of start-up phases, for docs/dev/sandbox.md and for slow CI machines.
step() {
    [[ -n ${T0:-} ]] || return 0
    now_ms
    printf '%6s ms  %s\n' "$((NOW_MS - T0))" "$1" >>"$DIR/logs/start.log"
}

# One line of `status`: NAME running (with what `describe NAME` says) or stopped.
server_status() {
    if running "$1"; then
        printf '%s running: %s\n' "$1" "$(describe "$1")"
    else
        printf '%s stopped\n' "$1"
    fi
}

# `SCRIPT start DIR ...`, `SCRIPT stop DIR`, `SCRIPT COMMAND DIR [ARG]` for one of
# COMMANDS (cmd_ with - as _), and the watchdog's callback.
dispatch() {
    local sub=${1:-}
    (($# > 0)) && shift
    case $sub in
    start) cmd_start "$@" ;;
    stop)
        set_dir "${1:-}"
        cmd_stop
        ;;
    __watchdog)
        set_dir "${1:-}"
        cmd_watchdog "$@"
        ;;
    *)
        [[ -n $sub && " ${COMMANDS[*]} " == *" $sub "* ]] || usage
        set_dir "${1:-}"
        [[ -d $DIR ]] || die "no $PROG directory $DIR"
        "cmd_${sub//-/_}" "${2:-}"
        ;;
    esac
}
