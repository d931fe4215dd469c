#!/usr/bin/env bash
# What the daily playbook costs per host (docs/dev/benchmarks.md, "The daily playbook").
#
#   tests/bench/playbook.sh [--sizes "10 30"] [--versions "main work"] [--forks 20]
#                           [--runs "first quiet check"] [--out DIR]
#
# For every fleet size N it starts one sandbox and, for every version of the collection,
# writes a local fleet of N hosts with tests/fleet/inventory.sh (plus its legacy host and the
# DNS primary: N+2 inventory hosts), then runs the daily playbook on it: `first` (every
# certificate ordered), `quiet` (right after: nothing due, nothing changed) and `check`
# (--check, nothing due). The versions run one after the other at each step (main's first
# run, then this tree's, then main's quiet run, ...) so that both see the same load.
#
#   main   the collection as `git show main:ansible/` has it (REF=main: another branch or a
#          commit, e.g. the last one before the one-module-run playbook, 6c0b316)
#   work   the collection of this work tree
#
# Measured per run: wall time; the total CPU of ansible-playbook and everything under it
# (GNU time: the forks, the modules and fleetcert, which all run on this machine); the
# module processes, each counted and timed by a wrapper set as ansible_python_interpreter;
# fleetcert's own processes, timed by a wrapper installed as the hosts' binary (a few bytes,
# so the copy costs what a release binary's would, not a 170 MB debug build's checksum); the
# controller's CPU is the total less the modules', and of it the main process's own (the
# strategy and result handling, which run serially there: what bounds a very large fleet)
# is sampled from /proc/PID/stat until it exits. Tasks per host: ok + skipped + failed +
# rescued + ignored of the PLAY RECAP, for host1 (a good host) and averaged over the fleet.
#
# Writes DIR/results.tsv (one line per version, size and run, with the machine's 1-minute load
# at the run's start and end) and prints it as a table.
#
# Environment: FLEETCERT (the real binary, default target/debug/fleetcert of this tree),
# REF (default main), RUN_TIMEOUT (seconds one playbook run may take, default 1800; it is
# only a guard against a hung run: a run that exceeds it is reported as such, by name).
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/../.." && pwd)
REF=${REF:-main}
FLEETCERT=${FLEETCERT:-${CARGO_TARGET_DIR:-$REPO/target}/debug/fleetcert}
RUN_TIMEOUT=${RUN_TIMEOUT:-1800}
sizes="10 30" versions="main work" forks=20 runs="first quiet check" out=''

die() {
    printf 'playbook.sh: %s\n' "$*" >&2
    exit 2
}
while (($#)); do
    case $1 in
        --sizes) sizes=$2; shift 2 ;;
        --versions) versions=$2; shift 2 ;;
        --forks) forks=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) sed -n '4,5s/^# \{0,1\}//p' "$SELF" >&2; exit 2 ;;
    esac
done
[[ -x $FLEETCERT ]] || die "$FLEETCERT: no fleetcert binary (cargo build, or set FLEETCERT)"
[[ -x /usr/bin/time ]] || die "GNU time is missing: apt-get install time"
VENV=$REPO/.venv/bin
[[ -x $VENV/ansible-playbook ]] || die "$VENV/ansible-playbook: no venv (tests/install-python.sh)"

out=${out:-$(mktemp -d "${TMPDIR:-/tmp}/fleetcert-bench-playbook.XXXXXX")}
mkdir -p "$out"
out=$(cd "$out" && pwd)
sandbox=$out/sandbox
cleanup() { "$REPO/tests/sandbox/sandbox.sh" stop "$sandbox" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# --- the two collections ---------------------------------------------------------------
install_collection() { # VERSION SOURCE_DIR
    local dest=$out/collections/$1
    mkdir -p "$dest" "$out/build/$1"
    "$VENV/ansible-galaxy" collection build --force --output-path "$out/build/$1" "$2" >/dev/null
    "$VENV/ansible-galaxy" collection install --offline --force --collections-path "$dest" \
        "$out/build/$1"/*.tar.gz >/dev/null
}
for version in $versions; do
    case $version in
        main)
            rm -rf "$out/src-main" && mkdir -p "$out/src-main"
            git -C "$REPO" archive "$REF" ansible | tar -x -C "$out/src-main"
            install_collection main "$out/src-main/ansible" ;;
        work) install_collection work "$REPO/ansible" ;;
        *) die "unknown version $version (main or work)" ;;
    esac
done

# --- wrappers: every module process and every fleetcert process, timed -----------------
mkdir -p "$out/bin"
cat >"$out/bin/python" <<EOF
#!/bin/sh
exec /usr/bin/time -a -o "\$FLEETCERT_BENCH_LOG.modules" -f '%e %U %S' /usr/bin/python3 "\$@"
EOF
cat >"$out/bin/fleetcert" <<EOF
#!/bin/sh
exec /usr/bin/time -a -o "\$FLEETCERT_BENCH_LOG.fleetcert" -f '%e %U %S' '$FLEETCERT' "\$@"
EOF
chmod 0755 "$out/bin/python" "$out/bin/fleetcert"

# Sum of user+sys seconds and the number of lines of a GNU time log.
cpu_of() { awk '{n++; s += $2 + $3} END {printf "%d %.2f\n", n, s}' "$1" 2>/dev/null || echo "0 0"; }

printf 'size\tversion\trun\thosts\texit\twall_s\tcpu_s_per_host\tcontroller_cpu_s_per_host\tmodule_cpu_s_per_host\tfleetcert_cpu_ms_per_host\tfleetcert_share_pct\ttasks_host1\ttasks_per_host\tmodules_per_host\tmain_process_cpu_s\tload_start\tload_end\n' \
    >"$out/results.tsv"

run_playbook() { # SIZE VERSION RUN
    local size=$1 version=$2 run=$3 fleet=$out/fleet-$1-$2 log=$out/log-$1-$2-$3
    local extra=() started ended code=0
    [[ $run != check ]] || extra=(--check)
    : >"$log.modules"
    : >"$log.fleetcert"
    # The machine's 1-minute load average (uptime's first figure) at the start and the end:
    # on a shared machine it says how much of the wall time was other people's work.
    local load_start load_end
    read -r load_start _ </proc/loadavg
    started=$(date +%s.%N)
    FLEETCERT_BENCH_LOG=$log ANSIBLE_CONFIG=$REPO/ansible/ansible.cfg \
        ANSIBLE_COLLECTIONS_PATH=$out/collections/$version ANSIBLE_LOCAL_TEMP=$fleet/ansible-tmp \
        ANSIBLE_FORKS=$forks \
        timeout "$RUN_TIMEOUT" /usr/bin/time -o "$log.total" -f '%e %U %S' \
        "$VENV/python" "$VENV/ansible-playbook" -i "$fleet/inventory" -e "@$fleet/extra-vars.yaml" \
        -e "ansible_python_interpreter=$out/bin/python" "${extra[@]}" fleetcert.fleetcert.daily \
        >"$log.out" 2>&1 &
    local runner=$! main_pid='' stat=''
    # The main process's own CPU (utime + stime of /proc/PID/stat, not its children's): the
    # strategy and the results run there, serially, whatever the forks do. Sampled until it
    # exits; the last sample is within a fraction of a second of its end.
    while kill -0 "$runner" 2>/dev/null; do
        [[ -n $main_pid ]] || main_pid=$(pgrep -f -n "^$VENV/python $VENV/ansible-playbook -i $fleet/inventory" || true)
        if [[ -n $main_pid && -r /proc/$main_pid/stat ]]; then
            stat=$(cat "/proc/$main_pid/stat" 2>/dev/null || echo "$stat")
        fi
        sleep 0.2
    done
    wait "$runner" || code=$?
    local ticks
    ticks=$(getconf CLK_TCK)
    echo "$stat" | awk -v t="$ticks" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / t }' >"$log.main"
    ended=$(date +%s.%N)
    read -r load_end _ </proc/loadavg
    if ((code == 124)); then
        echo "playbook.sh: the $run run of $version over $size hosts exceeded RUN_TIMEOUT=${RUN_TIMEOUT}s; its output: $log.out" >&2
    fi
    local hosts total modules fleet_cpu
    hosts=$(awk '/PLAY RECAP/ {r = 1; next} r && / : ok=/ {n++} END {print n + 0}' "$log.out")
    ((hosts > 0)) || hosts=1
    total=$(tail -n 1 "$log.total" | awk '{printf "%.2f", $2 + $3}')
    read -r module_count modules < <(cpu_of "$log.modules")
    read -r _ fleet_cpu < <(cpu_of "$log.fleetcert")
    # Tasks a host evaluated: every counter of its recap line but `changed` (part of ok) and
    # `unreachable`.
    local tasks_host1 tasks_all
    tasks_host1=$(awk '/PLAY RECAP/ {r = 1; next} r && $1 == "host1.example.test" {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] != "changed" && kv[1] != "unreachable") t += kv[2] } }
        END {print t + 0}' "$log.out")
    tasks_all=$(awk '/PLAY RECAP/ {r = 1; next} r && / : ok=/ {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] != "changed" && kv[1] != "unreachable") t += kv[2] } }
        END {print t + 0}' "$log.out")
    awk -v size="$size" -v version="$version" -v run="$run" -v hosts="$hosts" -v code="$code" \
        -v wall="$(echo "$ended - $started" | bc)" -v total="$total" -v modules="$modules" \
        -v count="$module_count" -v fc="$fleet_cpu" -v t1="$tasks_host1" -v ta="$tasks_all" \
        -v main="$(cat "$log.main" 2>/dev/null || echo 0)" -v l0="$load_start" -v l1="$load_end" \
        'BEGIN {
            printf "%s\t%s\t%s\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.0f\t%.2f\t%d\t%.1f\t%.1f\t%.2f\t%s\t%s\n",
                size, version, run, hosts, code, wall, total / hosts, (total - modules) / hosts,
                modules / hosts, 1000 * fc / hosts, (total > 0 ? 100 * fc / total : 0), t1,
                ta / hosts, count / hosts, main, l0, l1
        }' >>"$out/results.tsv"
    tail -n 1 "$out/results.tsv"
}

for size in $sizes; do
    cleanup
    rm -rf "$sandbox"
    echo "==> sandbox for $size hosts" >&2
    "$REPO/tests/sandbox/sandbox.sh" start "$sandbox" --parent $$ >/dev/null
    for version in $versions; do
        rm -rf "$out/fleet-$size-$version"
        "$REPO/tests/fleet/inventory.sh" "$sandbox/sandbox.env" "$out/fleet-$size-$version" \
            --hosts "$size" --binary "$out/bin/fleetcert" --metrics >/dev/null
    done
    for run in $runs; do
        for version in $versions; do
            echo "==> $size hosts, $version, $run run" >&2
            run_playbook "$size" "$version" "$run"
        done
    done
done

echo
column -t -s $'\t' "$out/results.tsv"
echo "(results: $out/results.tsv; playbook output: $out/log-*.out)"
