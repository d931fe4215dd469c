#!/usr/bin/env bash
# A fleet against lego, and the distance to the floor (docs/dev/benchmarks.md).
#
#   tests/bench/fleet.sh [--sizes "10 50 200"] [--runs 3] [--parallel 10] [--out DIR]
#                        [--variants "fleetcert lego floor"]
#
# For every run and every fleet size it measures, one after the other on a fresh sandbox
# each (the order of the variants rotates from run to run):
#   fleetcert  N hosts, one certificate of two names each (hostK + wwwK.example.test): all
#              `request`s in parallel, one `publish`, all `finalize`s in parallel, as the
#              playbook runs them.
#   lego       the same N certificates with lego's rfc2136 provider (TSIG UPDATE to the BIND
#              primary), following the same CNAMEs, with the same parallelism.
#   floor      the same N orders against Pebble with PEBBLE_VA_ALWAYS_VALID=1 (fleetcert
#              request + finalize, no DNS), then the bare publish floor on the same sandbox:
#              write the zone with the 2N records, `rndc reload`, dig both servers until
#              they serve the new serial.
# Every sandbox runs Pebble with PEBBLE_AUTHZREUSE=0 (no reused authorizations for anyone)
# and PEBBLE_WFE_NONCEREJECT=0 (no random badNonce, which only adds noise).
#
# Wall time: from before the first process to after the last. CPU: user+sys of every
# process of the batch (GNU time around it: xargs waits for its children, so their usage
# is included), and separately the servers' CPU from /proc/PID/stat before and after.
# Writes DIR/results.tsv and DIR/summary.md and prints the summary.
#
# Two more variants on request: `baseline` (the fleetcert flow with the binary in
# FLEETCERT_BASELINE, e.g. one built from an older commit) and `lego-poll0` (lego with
# RFC2136_POLLING_INTERVAL=0 instead of 1: faster, but about half of its validations fail,
# see docs/dev/benchmarks.md).
#
# Environment: FLEETCERT (binary, default target/release/fleetcert, built when missing),
# FLEETCERT_BASELINE, LEGO_POLLING_INTERVAL (for `lego`, default 1 s), FLOW_TIMEOUT
# (seconds one measured batch may take, default 900), KEEP=1 keeps the work directories.
# A run in which not every certificate was issued is listed but left out of the figures.
set -euo pipefail

PROG=fleet.sh
# shellcheck source=tests/bench/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
SELF=$(readlink -f "${BASH_SOURCE[0]}")
FLEETCERT=${FLEETCERT:-$REPO/target/release/fleetcert}
LEGO_POLLING_INTERVAL=${LEGO_POLLING_INTERVAL:-1}
TIME=/usr/bin/time
TSIG_NAME=lego
FLOW_TIMEOUT=${FLOW_TIMEOUT:-900}

# --- the flows (run under GNU time, one process tree each) ------------------------------

# each N P COMMAND: the sh COMMAND for {} = 1..N, P at a time. A failed one is not an error
# here: the certificates counted afterwards tell.
each() {
    seq 1 "$1" | xargs -P "$2" -I{} sh -c "$3" || true
}

# fleetcert's daily run: requests in parallel, one publish, finalizes in parallel.
# Phase boundaries go to WORK/phases (EPOCHREALTIME).
flow_fleetcert() {
    local work=$1 n=$2 p=$3 FLEETCERT=$4
    echo "start $EPOCHREALTIME" >"$work/phases"
    each "$n" "$p" "exec '$FLEETCERT' request --config '$work/hosts/{}/host.yaml' >'$work/tokens/{}.json' 2>'$work/logs/request-{}.log'"
    echo "requested $EPOCHREALTIME" >>"$work/phases"
    local args=() i
    for ((i = 1; i <= n; i++)); do args+=(--tokens "$work/tokens/$i.json"); done
    "$FLEETCERT" publish --config "$work/zone.yaml" "${args[@]}" \
        >"$work/publish.json" 2>"$work/logs/publish.log" || true
    echo "published $EPOCHREALTIME" >>"$work/phases"
    each "$n" "$p" "exec '$FLEETCERT' finalize --config '$work/hosts/{}/host.yaml' >'$work/logs/finalize-{}.json' 2>'$work/logs/finalize-{}.log'"
    echo "finalized $EPOCHREALTIME" >>"$work/phases"
}

# The ACME floor: the same orders with a CA that validates everything, no publish.
flow_acme_floor() {
    local work=$1 n=$2 p=$3
    echo "start $EPOCHREALTIME" >"$work/phases"
    each "$n" "$p" "exec '$FLEETCERT' request --config '$work/hosts/{}/host.yaml' >'$work/tokens/{}.json' 2>'$work/logs/request-{}.log'"
    echo "requested $EPOCHREALTIME" >>"$work/phases"
    each "$n" "$p" "exec '$FLEETCERT' finalize --config '$work/hosts/{}/host.yaml' >'$work/logs/finalize-{}.json' 2>'$work/logs/finalize-{}.log'"
    echo "finalized $EPOCHREALTIME" >>"$work/phases"
}

# The publish floor: the least any publish can do. The zone text is made beforehand.
flow_publish_floor() {
    local work=$1
    # shellcheck disable=SC1091
    source "$work/sandbox.env"
    cp "$work/floor-zone.db" "$SIGNING_ZONE_FILE.tmp"
    mv "$SIGNING_ZONE_FILE.tmp" "$SIGNING_ZONE_FILE"
    "$RNDC" reload acme.test >/dev/null
    local server serial
    for server in "$PRIMARY_PORT" "$SECONDARY_PORT"; do
        while :; do
            serial=$(dig +short +norec +time=1 +tries=1 -p "$server" @127.0.0.1 acme.test SOA | cut -d' ' -f3)
            [[ $serial == 2 ]] && break
            sleep 0.01
        done
    done
}

# lego, the same certificates with the same parallelism.
flow_lego() {
    local work=$1 n=$2 p=$3 interval=$4
    # shellcheck disable=SC1091
    source "$work/sandbox.env"
    export LEGO_CA_CERTIFICATES=$CA_BUNDLE
    export RFC2136_NAMESERVER=$PRIMARY RFC2136_TSIG_ALGORITHM=hmac-sha256.
    export RFC2136_TSIG_KEY=$TSIG_NAME RFC2136_TSIG_SECRET
    RFC2136_TSIG_SECRET=$(cat "$work/tsig.secret")
    export RFC2136_PROPAGATION_TIMEOUT=60 RFC2136_POLLING_INTERVAL=$interval
    export RFC2136_SEQUENCE_INTERVAL=0 RFC2136_TTL=60
    export LEGO_DISABLE_CNAME_SUPPORT=false
    echo "start $EPOCHREALTIME" >"$work/phases"
    each "$n" "$p" "exec lego --path '$work/lego/{}' --server '$ACME_DIRECTORY' --accept-tos --email ops@example.test --key-type ec384 --dns rfc2136 --dns.resolvers '$RESOLVER' --dns.disable-cp -d host{}.example.test -d www{}.example.test run >'$work/logs/lego-{}.log' 2>&1"
    echo "finalized $EPOCHREALTIME" >>"$work/phases"
}

# --- setup ------------------------------------------------------------------------------

start_sandbox() {
    local sb=$1
    shift
    "$SANDBOX" start "$sb" --parent $$ \
        --pebble-env PEBBLE_AUTHZREUSE=0 --pebble-env PEBBLE_WFE_NONCEREJECT=0 "$@" ||
        die "sandbox did not start in $sb"
}

write_host_configs() {
    local work=$1 n=$2 i
    # shellcheck disable=SC1091
    source "$work/sandbox.env"
    mkdir -p "$work/tokens" "$work/logs"
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$work/hosts/$i"
        cat >"$work/hosts/$i/host.yaml" <<EOF
acme: {directory: "$ACME_DIRECTORY", email: ops@example.test, agree_tos: true, ca_bundle: "$CA_BUNDLE"}
host: host$i.example.test
signing_zone: acme.test
resolver: "$RESOLVER"
state_dir: $work/hosts/$i/state
cert_dir: $work/hosts/$i/certs
group: root
certs: {main: [host$i.example.test, www$i.example.test]}
EOF
    done
    cat >"$work/zone.yaml" <<EOF
zone: acme.test
zone_file: $SIGNING_ZONE_FILE
soa: {mname: ns1.acme.test., rname: hostmaster.acme.test.}
nameservers: [ns1.example.test., ns2.example.test.]
reload: ["$RNDC", reload, acme.test]
servers: ["$PRIMARY", "$SECONDARY"]
timeout: 60s
EOF
}

# The zone the publish floor writes: the 2N records of the floor's own token documents.
write_floor_zone() {
    local work=$1 n=$2
    {
        printf '$TTL 60\n@ IN SOA ns1.acme.test. hostmaster.acme.test. 2 3600 600 864000 60\n'
        printf '@ IN NS ns1.example.test.\n@ IN NS ns2.example.test.\n'
        cat "$work"/tokens/*.json | jq -r '.records[] | "\(.name) IN TXT \"\(.value)\""'
    } >"$work/floor-zone.db"
    local records
    records=$(grep -c ' TXT ' "$work/floor-zone.db" || true)
    ((records == 2 * n)) || echo "warning: floor zone has $records records, not $((2 * n))" >&2
}

# utime+stime (clock ticks) of each sandbox server, "primary secondary unbound pebble".
server_ticks() {
    local sb=$1 name pid stat out=()
    for name in primary secondary unbound pebble; do
        pid=$(cat "$sb/pids/$name.pid" 2>/dev/null || echo 0)
        if read -r stat 2>/dev/null <"/proc/$pid/stat"; then
            stat=${stat##*) }
            # shellcheck disable=SC2086
            set -- $stat
            out+=($((${12} + ${13})))
        else
            out+=(0)
        fi
    done
    echo "${out[*]}"
}

# Runs one flow under GNU time; sets WALL, USER, SYS (seconds) and SRV (ticks delta).
measure() {
    local sb=$1
    shift
    local before after t0 t1 tf=$WORKDIR/time.out
    read -ra before <<<"$(server_ticks "$sb")"
    t0=$EPOCHREALTIME
    # timeout signals the flow's whole process group: a wedged CA cannot hang the benchmark
    # (Pebble 2.4 did wedge once, see docs/dev/benchmarks.md); the run then counts as failed.
    "$TIME" -f '%U %S' -o "$tf" timeout -k 10 "$FLOW_TIMEOUT" "$SELF" "$@" || true
    t1=$EPOCHREALTIME
    read -ra after <<<"$(server_ticks "$sb")"
    WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    read -r USER SYS <"$tf"
    SRV="$((after[0] - before[0])) $((after[1] - before[1])) $((after[2] - before[2])) $((after[3] - before[3]))"
}

phase_walls() {
    awk 'NR == 1 { t = $2; next } { printf "%s%s=%.3f", sep, $1, $2 - t; sep = ","; t = $2 }' "$1/phases"
}

count_fleetcert_certs() {
    local work=$1 n=$2 i ok=0
    for ((i = 1; i <= n; i++)); do
        [[ -s $work/hosts/$i/certs/main/fullchain.pem ]] && ok=$((ok + 1))
    done
    echo "$ok"
}

count_lego_certs() {
    local work=$1 n=$2 i ok=0
    for ((i = 1; i <= n; i++)); do
        [[ -s $work/lego/$i/certificates/host$i.example.test.crt ]] && ok=$((ok + 1))
    done
    echo "$ok"
}

record() {
    # variant size run wall user sys srv_primary srv_secondary srv_unbound srv_pebble ok phases
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$WALL" "$USER" "$SYS" \
        "${SRV// /$'\t'}" "$4" "$5" >>"$OUT/results.tsv"
    printf '  %-14s n=%-4s run %s: wall %7ss  cpu %6ss (+servers %s ticks)  certs %s/%s  %s\n' \
        "$1" "$2" "$3" "$WALL" "$(awk -v u="$USER" -v s="$SYS" 'BEGIN { print u + s }')" \
        "$SRV" "$4" "$2" "$5" >&2
}

run_variant() {
    local variant=$1 n=$2 run=$3 work ok
    work=$OUT/work/$variant-$n-$run
    WORKDIR=$work
    mkdir -p "$work"
    case $variant in
    fleetcert | baseline)
        local bin=$FLEETCERT
        [[ $variant == fleetcert ]] || bin=$FLEETCERT_BASELINE
        start_sandbox "$work/sb"
        cp "$work/sb/sandbox.env" "$work/"
        write_host_configs "$work" "$n"
        measure "$work/sb" __flow fleetcert "$work" "$n" "$PARALLEL" "$bin"
        ok=$(count_fleetcert_certs "$work" "$n")
        record "$variant" "$n" "$run" "$ok" "$(phase_walls "$work")"
        ;;
    lego | lego-poll0)
        local interval=$LEGO_POLLING_INTERVAL
        [[ $variant == lego ]] || interval=0
        head -c 32 /dev/urandom | base64 >"$work/tsig.secret"
        start_sandbox "$work/sb" --tsig "$TSIG_NAME=$(cat "$work/tsig.secret")"
        cp "$work/sb/sandbox.env" "$work/"
        mkdir -p "$work/logs" "$work/lego"
        measure "$work/sb" __flow lego "$work" "$n" "$PARALLEL" "$interval"
        ok=$(count_lego_certs "$work" "$n")
        record "$variant" "$n" "$run" "$ok" "$(phase_walls "$work")"
        ;;
    floor)
        start_sandbox "$work/sb" --pebble-env PEBBLE_VA_ALWAYS_VALID=1
        cp "$work/sb/sandbox.env" "$work/"
        write_host_configs "$work" "$n"
        measure "$work/sb" __flow acme_floor "$work" "$n" "$PARALLEL"
        ok=$(count_fleetcert_certs "$work" "$n")
        record floor-acme "$n" "$run" "$ok" "$(phase_walls "$work")"
        write_floor_zone "$work" "$n"
        measure "$work/sb" __flow publish_floor "$work"
        record floor-publish "$n" "$run" "$(($(grep -c ' TXT ' "$work/floor-zone.db" || true) / 2))" "-"
        ;;
    *) die "unknown variant $variant" ;;
    esac
    if [[ ${ok:-0} -lt $n ]]; then
        # Keep the evidence: Pebble's goroutines (SIGQUIT makes Go print them) and the logs.
        local pebble
        pebble=$(cat "$work/sb/pids/pebble.pid" 2>/dev/null || true)
        [[ -z $pebble ]] || kill -QUIT "$pebble" 2>/dev/null || true
        sleep 1
        mkdir -p "$OUT/failed/$variant-$n-$run"
        cp -r "$work/sb/logs" "$work/logs" "$OUT/failed/$variant-$n-$run/" 2>/dev/null || true
    fi
    "$SANDBOX" stop "$work/sb"
    [[ ${KEEP:-} == 1 ]] || rm -rf "$work"
}

summarize() {
    python3 - "$OUT/results.tsv" "$PARALLEL" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
failed = []
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    v, n = f[0], int(f[1])
    wall, user, sys_ = float(f[3]), float(f[4]), float(f[5])
    srv = [int(x) / 100 for x in f[6:10]]
    r = dict(wall=wall, cpu=user + sys_, srv=sum(srv), srvs=srv, ok=int(f[10]), phases=f[11],
             run=f[2])
    if r["ok"] < n:
        failed.append((v, n, f[2], r["ok"]))
    else:
        rows[(v, n)].append(r)
def stat(xs):
    return statistics.median(xs), min(xs), max(xs)
def fmt(xs):
    m, lo, hi = stat(xs)
    return f"{m:.2f} ({lo:.2f}–{hi:.2f})"
sizes = sorted({n for _, n in rows})
print(f"parallelism {sys.argv[2]}; median (min–max) of the runs; seconds\n")
print("| hosts | variant | runs | certs ok | wall | client CPU | server CPU |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
for n in sizes:
    floor = None
    if (("floor-acme", n) in rows) and (("floor-publish", n) in rows):
        a = {r["run"]: r for r in rows[("floor-acme", n)]}
        p = {r["run"]: r for r in rows[("floor-publish", n)]}
        floor = [dict(wall=a[k]["wall"] + p[k]["wall"], cpu=a[k]["cpu"] + p[k]["cpu"],
                      srv=a[k]["srv"] + p[k]["srv"], ok=a[k]["ok"]) for k in a if k in p]
        rows[("floor (sum)", n)] = floor
    for v in ["fleetcert", "baseline", "lego", "lego-poll0", "floor-acme", "floor-publish", "floor (sum)"]:
        rs = rows.get((v, n))
        if not rs:
            continue
        ok = "/".join(str(r["ok"]) for r in rs)
        print(f"| {n} | {v} | {len(rs)} | {ok} | {fmt([r['wall'] for r in rs])} | "
              f"{fmt([r['cpu'] for r in rs])} | {fmt([r['srv'] for r in rs])} |")
print()
print("| hosts | lego / fleetcert wall | lego / fleetcert client CPU | lego / fleetcert client+server CPU | fleetcert / floor wall | baseline / fleetcert wall |")
print("| ---: | ---: | ---: | ---: | ---: | ---: |")
med = lambda rs, k: statistics.median([r[k] for r in rs])
tot = lambda rs: statistics.median([r["cpu"] + r["srv"] for r in rs])
for n in sizes:
    f, fl, b = rows.get(("fleetcert", n)), rows.get(("floor (sum)", n)), rows.get(("baseline", n))
    # lego: whichever of its configurations had the lower median wall time at this size
    legos = [(v, rows[(v, n)]) for v in ["lego"] if (v, n) in rows]
    lv, l = min(legos, key=lambda x: med(x[1], "wall")) if legos else (None, None)
    c1 = f"{med(l, 'wall') / med(f, 'wall'):.1f}× ({lv})" if f and l else "–"
    c2 = f"{med(l, 'cpu') / med(f, 'cpu'):.1f}×" if f and l else "–"
    c3 = f"{tot(l) / tot(f):.1f}×" if f and l else "–"
    c4 = f"{med(f, 'wall') / med(fl, 'wall'):.2f}×" if f and fl else "–"
    c5 = f"{med(b, 'wall') / med(f, 'wall'):.1f}×" if f and b else "–"
    print(f"| {n} | {c1} | {c2} | {c3} | {c4} | {c5} |")
print()
if failed:
    print("left out (not every certificate issued): " + ", ".join(
        f"{v} n={n} run {run} ({ok}/{n})" for v, n, run, ok in failed))
    print()
print("phases (median s):")
for n in sizes:
    for v in ["fleetcert", "baseline", "floor-acme", "lego", "lego-poll0"]:
        rs = rows.get((v, n))
        if not rs:
            continue
        ph = collections.defaultdict(list)
        for r in rs:
            for kv in r["phases"].split(","):
                if "=" in kv:
                    k, x = kv.split("=")
                    ph[k].append(float(x))
        print(f"  {v} n={n}: " + ", ".join(f"{k} {statistics.median(x):.2f}" for k, x in ph.items()))
PY
}

main() {
    if [[ ${1:-} == __flow ]]; then
        shift
        local flow=$1
        shift
        "flow_$flow" "$@"
        return
    fi
    if [[ ${1:-} == --summary ]]; then
        # Summarize an earlier results.tsv again (e.g. after concatenating several).
        OUT=$(dirname "$2") PARALLEL=${3:-10}
        summarize
        return
    fi
    local sizes="10 50 200" runs=3 variants="fleetcert lego floor"
    PARALLEL=10
    OUT=
    while (($# > 0)); do
        case $1 in
        --sizes) sizes=$2 ;;
        --runs) runs=$2 ;;
        --parallel) PARALLEL=$2 ;;
        --out) OUT=$2 ;;
        --variants) variants=$2 ;;
        -h | --help)
            sed -n '4,5s/^# \{0,1\}//p' "$SELF"
            exit 0
            ;;
        *) die "unknown option $1 (see --help)" ;;
        esac
        shift 2
    done
    [[ -n $OUT ]] || OUT=$(mktemp -d "${TMPDIR:-/tmp}/fleetcert-bench-XXXXXX")
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    [[ " $variants " != *" baseline "* || -x ${FLEETCERT_BASELINE:-} ]] ||
        die "variant baseline wants FLEETCERT_BASELINE=/path/to/an/older/fleetcert"
    for cmd in lego jq dig xargs python3 "$TIME"; do
        command -v "$cmd" >/dev/null || die "$cmd not found (apt-get install -y lego jq dnsutils time)"
    done
    if [[ ! -x $FLEETCERT ]]; then
        (cd "$REPO" && cargo build --release --locked) || die "cargo build --release failed"
    fi
    : >"$OUT/results.tsv"
    {
        echo "date: $(date -u +%FT%TZ)"
        echo "fleetcert: $FLEETCERT ($(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
        echo "lego: $(dpkg-query -W -f '${Version}' lego 2>/dev/null || echo '?'), RFC2136_POLLING_INTERVAL=$LEGO_POLLING_INTERVAL"
        echo "cpus: $(nproc), load: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "sizes: $sizes, runs: $runs, parallelism: $PARALLEL, variants: $variants"
    } | tee "$OUT/meta.txt" >&2
    local run n v order i
    read -ra order <<<"$variants"
    for ((run = 1; run <= runs; run++)); do
        for n in $sizes; do
            # Rotate the order of the variants from run to run.
            for ((i = 0; i < ${#order[@]}; i++)); do
                v=${order[$(((i + run - 1) % ${#order[@]}))]}
                run_variant "$v" "$n" "$run"
            done
        done
    done
    summarize | tee "$OUT/summary.md"
    echo "results: $OUT/results.tsv" >&2
}

main "$@"
