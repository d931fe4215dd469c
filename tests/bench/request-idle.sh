#!/usr/bin/env bash
# Benchmark of the host half (docs/dev/benchmarks.md, "`request` when nothing is due"):
#
#   1. one certificate issued end to end on the sandbox, timing request, placing the
#      records (the test helper's way: zone file + rndc reload + wait for both servers)
#      and finalize;
#   2. `fleetcert request` with that certificate valid and ARI off, run N times: wall time
#      (hyperfine when installed, else a loop) and peak RSS (`/usr/bin/time -v`).
#
# Targets: idle request under 20 ms wall and under 20 MB peak RSS per run.
#
# Usage: tests/bench/request-idle.sh [N]      (N idle runs, default 100)
# Needs the sandbox packages (tests/sandbox/install.sh), jq, and GNU time (`apt-get install
# time`); hyperfine is optional (`apt-get install hyperfine`).
set -euo pipefail

runs=${1:-100}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

for tool in jq dig /usr/bin/time; do
    command -v "$tool" >/dev/null || {
        echo "request-idle.sh: $tool is missing: install it (apt-get install jq dnsutils time)" >&2
        exit 2
    }
done

echo "==> cargo build --release"
cargo build --release --locked --quiet
bin=$repo/target/release/fleetcert

work=$(mktemp -d "${TMPDIR:-/tmp}/fleetcert-bench-idle.XXXXXX")
sandbox=$work/sandbox
cleanup() {
    tests/sandbox/sandbox.sh stop "$sandbox" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "==> starting the sandbox"
# Pebble reuses no authorization: the end-to-end figure always includes a validation.
tests/sandbox/sandbox.sh start "$sandbox" --parent $$ --pebble-env PEBBLE_AUTHZREUSE=0 >/dev/null
# shellcheck source=/dev/null
source "$sandbox/sandbox.env"

config=$work/fleetcert.yaml
cat >"$config" <<EOF
acme: {directory: $ACME_DIRECTORY, email: ops@example.test, agree_tos: true, ca_bundle: $CA_BUNDLE}
host: host1.example.test
signing_zone: acme.test
resolver: $RESOLVER
state_dir: $work/state
cert_dir: $work/certs
group: root
key: ecdsa-p384
renew: {ari: false}
certs: {main: [host1.example.test, www1.example.test]}
EOF

now_ms() { echo $(($(date +%s%N) / 1000000)); }

serial_at() { # ip:port -> SOA serial of acme.test, empty when no answer
    dig +short +time=1 +tries=1 -p "${1##*:}" "@${1%:*}" acme.test SOA | awk '{print $3}'
}

# The sandbox helper's way of placing records: rewrite the zone, reload, wait for both.
place_records() { # token document on stdin
    local serial zone tmp
    serial=$(($(serial_at "$PRIMARY") + 1))
    zone=$(printf '$TTL 60\n@ IN SOA ns1.acme.test. hostmaster.acme.test. %s 3600 600 864000 60\n@ IN NS ns1.acme.test.\n@ IN NS ns2.acme.test.\nns1 IN A 127.0.0.1\nns2 IN A 127.0.0.1\n' "$serial")
    zone+=$'\n'$(jq -r '.records[] | "\(.name) 60 IN TXT \"\(.value)\""')
    tmp=$SIGNING_ZONE_FILE.tmp
    printf '%s\n' "$zone" >"$tmp"
    mv "$tmp" "$SIGNING_ZONE_FILE"
    "$RNDC" reload acme.test >/dev/null
    for server in "$PRIMARY" "$SECONDARY"; do
        until [ "$(serial_at "$server")" = "$serial" ]; do sleep 0.01; done
    done
}

echo "==> one certificate end to end (2 names, ecdsa-p384, new account)"
t0=$(now_ms)
"$bin" request --config "$config" >"$work/tokens.json"
t1=$(now_ms)
place_records <"$work/tokens.json"
t2=$(now_ms)
"$bin" finalize --config "$config" >"$work/finalize.json"
t3=$(now_ms)
[ "$(jq -r '.certs[0].status' "$work/finalize.json")" = issued ] || {
    echo "request-idle.sh: finalize did not issue:" >&2
    cat "$work/finalize.json" >&2
    exit 1
}
printf '  request   %5d ms  (account registration + order, %s records)\n' \
    $((t1 - t0)) "$(jq '.records | length' "$work/tokens.json")"
printf '  place     %5d ms  (zone file, rndc reload, primary and secondary serve it)\n' $((t2 - t1))
printf '  finalize  %5d ms  (validation, key, CSR, download, install)\n' $((t3 - t2))
printf '  total     %5d ms\n' $((t3 - t0))

echo "==> request with nothing due (ARI off), $runs runs"
"$bin" request --config "$config" >"$work/idle.json"
if [ "$(jq -c '[.changed, (.records | length), .certs[0].status]' "$work/idle.json")" != '[false,0,"valid"]' ]; then
    echo "request-idle.sh: the idle request did something:" >&2
    cat "$work/idle.json" >&2
    exit 1
fi
if command -v hyperfine >/dev/null; then
    hyperfine --shell=none --warmup 5 --runs "$runs" --style basic \
        --export-json "$work/hyperfine.json" "$bin request --config $config" >/dev/null 2>&1
    jq -r '.results[0] | "  wall      mean \(.mean * 1000 | . * 100 | round / 100) ms, median \(.median * 1000 | . * 100 | round / 100) ms, min \(.min * 1000 | . * 100 | round / 100) ms, max \(.max * 1000 | . * 100 | round / 100) ms  (hyperfine)"' \
        "$work/hyperfine.json"
else
    start=$(date +%s%N)
    for _ in $(seq "$runs"); do "$bin" request --config "$config" >/dev/null; done
    end=$(date +%s%N)
    printf '  wall      mean %s ms  (loop of %d; install hyperfine for the spread)\n' \
        "$(echo "scale=2; ($end - $start) / 1000000 / $runs" | bc)" "$runs"
fi
peak=0
for _ in $(seq 20); do
    kb=$(/usr/bin/time -v "$bin" request --config "$config" 2>&1 >/dev/null |
        awk -F': ' '/Maximum resident set size/ {print $2}')
    [ "$kb" -gt "$peak" ] && peak=$kb
done
printf '  peak RSS  %d kB = %s MB  (max of 20 runs, /usr/bin/time -v)\n' \
    "$peak" "$(echo "scale=1; $peak / 1024" | bc)"

# For comparison, not a target: with ARI on, an idle run opens the account, which fetches
# the CA's directory over HTTPS (Pebble has no renewalInfo, so that is all it asks).
if command -v hyperfine >/dev/null; then
    echo "==> the same with ARI on (for comparison)"
    sed -i 's/^renew: {ari: false}$/renew: {ari: true}/' "$config"
    hyperfine --shell=none --warmup 3 --runs 30 --style basic \
        --export-json "$work/hyperfine-ari.json" "$bin request --config $config" >/dev/null 2>&1
    jq -r '.results[0] | "  wall      mean \(.mean * 1000 | . * 100 | round / 100) ms, median \(.median * 1000 | . * 100 | round / 100) ms  (hyperfine, 30 runs)"' \
        "$work/hyperfine-ari.json"
fi
