#!/usr/bin/env bash
# Publishing by dynamic update next to the file publisher, and `renew` against lego's rfc2136
# provider (docs/dev/benchmarks.md, "publish by update" and "renew against lego").
#
#   tests/bench/update.sh [--records 10000] [--runs 5] [--renews 5] [--out DIR]
#
# Two sandboxes for the whole run (tests/sandbox/sandbox.sh): one plain (the file publisher:
# zone file + rndc reload), one whose signing zone is dynamic (--tsig keys; Pebble with
# PEBBLE_AUTHZREUSE=0). Then, interleaved, --runs times each:
#   file     `fleetcert publish` of N records (N/2 hosts, two names each, fresh values) by
#            zone file on the plain sandbox, until both servers serve them and all N are
#            checked on the primary;
#   update   the same documents by UPDATE on the dynamic sandbox: read the zone (AXFR),
#            the signed UPDATE messages (the previous run's N values deleted, N added), the
#            primary's serial, the same wait and check on both servers.
# and --renews times each, one certificate for two names (hostK, wwwK.example.test, a new K
# every time so that no authorization is reused):
#   renew    `fleetcert renew` with a host key limited to those names (new state, account,
#            order, one UPDATE, the wait on both servers, finalize, one UPDATE to clean up);
#   lego     `lego run` with its rfc2136 provider and the same options as tests/bench/fleet.sh
#            (RFC2136_POLLING_INTERVAL=1, sequence interval 0, --dns.disable-cp).
# Medians and ranges go to DIR/summary.md, every run (with the 1-minute load average just
# before it) to DIR/results.tsv. A failed run stops the script.
#
# Needs lego (apt-get install lego), dig, python3. Environment: FLEETCERT (default
# target/release/fleetcert, built first), LEGO_POLLING_INTERVAL (default 1), KEEP=1.
set -euo pipefail

PROG=update.sh
# shellcheck source=tests/bench/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
SELF=$(readlink -f "${BASH_SOURCE[0]}")
FLEETCERT=${FLEETCERT:-}
LEGO_POLLING_INTERVAL=${LEGO_POLLING_INTERVAL:-1}
RECORDS=10000
RUNS=5
RENEWS=5
OUT=

while [ $# -gt 0 ]; do
    case $1 in
    --records) RECORDS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --renews) RENEWS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,26p' "$SELF"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
for cmd in lego dig python3; do
    command -v "$cmd" >/dev/null || die "$cmd not found (apt-get install -y lego dnsutils python3)"
done
release_binary
work_dir bench-update plain dynamic
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT" "$WORK/tokens" "$WORK/logs"

secret() { head -c 32 /dev/urandom | base64; }
FLEET=$(secret) HOST=$(secret) LEGO=$(secret)
for key in FLEET HOST LEGO; do
    printf '%s\n' "${!key}" >"$WORK/$key.secret"
    chmod 600 "$WORK/$key.secret"
done
host_names=$(for ((k = 1; k <= RENEWS; k++)); do printf 'host%s.example.test.acme.test,www%s.example.test.acme.test,' "$k" "$k"; done)

"$SANDBOX" start "$WORK/plain" --parent $$ >"$WORK/logs/plain.log" 2>&1 ||
    die "the plain sandbox did not start: $(tail -n 20 "$WORK/logs/plain.log")"
"$SANDBOX" start "$WORK/dynamic" --parent $$ --pebble-env PEBBLE_AUTHZREUSE=0 \
    --pebble-env PEBBLE_WFE_NONCEREJECT=0 --tsig "fleet=$FLEET" --tsig "lego=$LEGO" \
    --tsig "host=$HOST@${host_names%,}" >"$WORK/logs/dynamic.log" 2>&1 ||
    die "the dynamic sandbox did not start: $(tail -n 20 "$WORK/logs/dynamic.log")"

# KEY=VALUE of one sandbox, into variables with a prefix.
load() {
    local prefix=$1 line
    while IFS= read -r line; do
        printf -v "${prefix}_${line%%=*}" '%s' "${line#*=}"
    done <"$2"
}
load P "$WORK/plain/sandbox.env"
load D "$WORK/dynamic/sandbox.env"

zone_file_config "$WORK/plain/sandbox.env" 60 >"$WORK/file.yaml"
cat >"$WORK/update.yaml" <<EOF
zone: acme.test
update: {server: "$D_PRIMARY", key_name: fleet, secret_file: $WORK/FLEET.secret}
state_dir: $WORK/publish-state
servers: [$D_PRIMARY, $D_SECONDARY]
timeout: 60s
EOF


# publish KIND CONFIG TOKENS RUN: the wall time of one publish, checked.
publish() {
    local kind=$1 config=$2 tokens=$3 run=$4 start end report=$OUT/$1-$4.json
    start=$(now)
    "$FLEETCERT" publish --config "$config" --tokens "$tokens" >"$report" \
        2>"$WORK/logs/$kind-$run.log" ||
        die "$kind publish failed (run $run): $(tail -n 3 "$WORK/logs/$kind-$run.log")"
    end=$(now)
    grep -q "\"records\": $RECORDS," "$report" || die "$kind publish reported another count"
    elapsed "$start" "$end"
}

# renew K: one fresh host, one certificate of hostK and wwwK.
renew() {
    local k=$1 home=$WORK/renew/$1 start end
    mkdir -p "$home"
    cat >"$home/fleetcert.yaml" <<EOF
acme: {directory: "$D_ACME_DIRECTORY", email: ops@example.test, agree_tos: true, ca_bundle: $D_CA_BUNDLE}
host: host$k.example.test
signing_zone: acme.test
resolver: "$D_RESOLVER"
state_dir: $home/state
cert_dir: $home/certs
group: root
renew: {ari: false}
certs:
  main: [host$k.example.test, www$k.example.test]
update: {server: "$D_PRIMARY", key_name: host, secret_file: $WORK/HOST.secret}
servers: ["$D_PRIMARY", "$D_SECONDARY"]
timeout: 60s
EOF
    start=$(now)
    "$FLEETCERT" renew --config "$home/fleetcert.yaml" >"$OUT/renew-$k.json" 2>"$WORK/logs/renew-$k.log" ||
        die "renew $k failed: $(tail -n 3 "$WORK/logs/renew-$k.log")"
    end=$(now)
    [ -s "$home/certs/main/fullchain.pem" ] || die "renew $k installed no certificate"
    elapsed "$start" "$end"
}

# lego K: the same certificate for hostK+N (other names: no reused authorization).
lego_run() {
    local k=$(($1 + 100)) start end
    start=$(now)
    LEGO_CA_CERTIFICATES=$D_CA_BUNDLE RFC2136_NAMESERVER=$D_PRIMARY \
        RFC2136_TSIG_ALGORITHM=hmac-sha256. RFC2136_TSIG_KEY=lego RFC2136_TSIG_SECRET=$LEGO \
        RFC2136_PROPAGATION_TIMEOUT=60 RFC2136_POLLING_INTERVAL=$LEGO_POLLING_INTERVAL \
        RFC2136_SEQUENCE_INTERVAL=0 RFC2136_TTL=60 LEGO_DISABLE_CNAME_SUPPORT=false \
        lego --path "$WORK/lego/$k" --server "$D_ACME_DIRECTORY" --accept-tos \
        --email ops@example.test --key-type ec384 --dns rfc2136 --dns.resolvers "$D_RESOLVER" \
        --dns.disable-cp -d "host$k.example.test" -d "www$k.example.test" run \
        >"$WORK/logs/lego-$k.log" 2>&1 || die "lego $k failed: $(tail -n 3 "$WORK/logs/lego-$k.log")"
    end=$(now)
    elapsed "$start" "$end"
}

# measure KIND RUN COMMAND...: one line of results.tsv. The assignment (not a substitution
# inside printf's arguments) makes a failed run stop the script under set -e.
measure() {
    local kind=$1 run=$2 load seconds
    shift 2
    load=$(cut -d' ' -f1 /proc/loadavg)
    seconds=$("$@")
    printf '%s\t%s\t%s\t%s\n' "$kind" "$run" "$seconds" "$load" >>"$OUT/results.tsv"
}

printf 'kind\trun\tseconds\tload1\n' >"$OUT/results.tsv"
for ((run = 1; run <= RUNS; run++)); do
    make_tokens "$RECORDS" acme.test >"$WORK/tokens/$run.json"
    measure file "$run" publish file "$WORK/file.yaml" "$WORK/tokens/$run.json" "$run"
    measure update "$run" publish update "$WORK/update.yaml" "$WORK/tokens/$run.json" "$run"
done
# The update zone back to nothing, so that renew's reads are a host's, not a fleet's.
python3 -c "import json,sys; print(json.dumps([dict(d, records=[]) for d in json.load(open(sys.argv[1]))]))" \
    "$WORK/tokens/1.json" >"$WORK/tokens/empty.json"
"$FLEETCERT" publish --config "$WORK/update.yaml" --tokens "$WORK/tokens/empty.json" >/dev/null
for ((k = 1; k <= RENEWS; k++)); do
    measure renew "$k" renew "$k"
    measure lego "$k" lego_run "$k"
done

column() { awk -F'\t' -v k="$1" -v c="$2" '$1 == k { print $c }' "$OUT/results.tsv"; }
{
    echo "| what | runs | median s | min–max s | load average (1 min) |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for kind in file update renew lego; do
        printf '| %s | %s | %.3f | %s | %s |\n' "$kind" "$(column "$kind" 3 | wc -l)" \
            "$(column "$kind" 3 | median)" "$(column "$kind" 3 | range)" "$(column "$kind" 4 | range)"
    done
    ratio() { awk -v a="$(column "$1" 3 | median)" -v b="$(column "$2" 3 | median)" 'BEGIN { printf "%.1f", a / b }'; }
    echo
    echo "update / file (medians): $(ratio update file)×; lego / renew (medians): $(ratio lego renew)×"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
