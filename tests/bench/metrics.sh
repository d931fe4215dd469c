#!/usr/bin/env bash
# Benchmark of the metrics file (docs/dev/benchmarks.md, "The metrics file"): what writing
# `fleetcert.prom` adds to an idle `request`, side by side in one run.
#
# No sandbox is needed: an idle request (one valid certificate on disk, ARI off) contacts
# nobody. The certificate is a self-signed ECDSA P-384 one made with openssl. Three configs,
# run interleaved (one run of each in turn, N times) so that load from elsewhere hits all
# three alike:
#   off      no `metrics:`;
#   on       `metrics.textfile_dir` with only this host's series in the file;
#   crowded  the same, the file also holding the series of 300 other hosts' configs (a bastion
#            with legacy hosts), which every run reads back and keeps.
# Also the peak RSS of each (max of 20 more runs, GNU time), and the CPU time of each.
#
# Usage: tests/bench/metrics.sh [N]      (N runs of each, default 200)
set -euo pipefail

runs=${1:-200}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

command -v /usr/bin/time >/dev/null || {
    echo "metrics.sh: /usr/bin/time is missing: apt-get install time" >&2
    exit 2
}

echo "==> cargo build --release"
cargo build --release --locked --quiet
bin=$repo/target/release/fleetcert

work=$(mktemp -d "${TMPDIR:-/tmp}/fleetcert-bench-metrics.XXXXXX")
trap 'rm -rf "$work"' EXIT

# One valid certificate in the fleetcert layout (plain files: no version directory needed).
mkdir -p "$work/certs/main" "$work/state"
chmod 700 "$work/state"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -nodes -days 90 \
    -subj /CN=host1.example.test -addext subjectAltName=DNS:host1.example.test \
    -keyout "$work/certs/main/privkey.pem" -out "$work/certs/main/fullchain.pem" 2>/dev/null

write_config() { # file, extra line
    cat >"$1" <<EOF
acme: {directory: https://127.0.0.1:1/dir, email: ops@example.test, agree_tos: true}
host: host1.example.test
signing_zone: acme.test
resolver: 127.0.0.1:1
state_dir: $work/state
cert_dir: $work/certs
group: root
renew: {ari: false}
certs: {main: [host1.example.test]}
$2
EOF
}
mkdir "$work/on" "$work/crowded"
write_config "$work/off.yaml" ""
write_config "$work/on.yaml" "metrics: {textfile_dir: $work/on}"
write_config "$work/crowded.yaml" "metrics: {textfile_dir: $work/crowded}"

# 300 other host configs' series in the crowded file: one request of each, as on a bastion.
for i in $(seq 300); do
    sed "s/^host: .*/host: legacy$i.example.test/" "$work/crowded.yaml" >"$work/legacy.yaml"
    "$bin" request --config "$work/legacy.yaml" >/dev/null
done
for kind in off on crowded; do
    "$bin" request --config "$work/$kind.yaml" >"$work/idle.json"
    grep -q '"changed": false' "$work/idle.json" || {
        echo "metrics.sh: the idle request did something:" >&2
        cat "$work/idle.json" >&2
        exit 1
    }
done
printf '  files: on %s bytes (%s series), crowded %s bytes (%s series)\n' \
    "$(wc -c <"$work/on/fleetcert.prom")" "$(grep -vc '^#' "$work/on/fleetcert.prom")" \
    "$(wc -c <"$work/crowded/fleetcert.prom")" "$(grep -vc '^#' "$work/crowded/fleetcert.prom")"

echo "==> idle request, $runs runs of each, interleaved"
declare -A total=([off]=0 [on]=0 [crowded]=0) peak=([off]=0 [on]=0 [crowded]=0)
declare -A samples
for i in $(seq "$runs"); do
    for kind in off on crowded; do
        start=$(date +%s%N)
        "$bin" request --config "$work/$kind.yaml" >/dev/null
        took=$(($(date +%s%N) - start))
        total[$kind]=$((total[$kind] + took))
        samples[$kind]+="$took"$'\n'
        # Peak RSS from 20 more runs of each, untimed (GNU time's own fork costs).
        if ((i <= 20)); then
            /usr/bin/time -f %M -o "$work/rss" "$bin" request --config "$work/$kind.yaml" >/dev/null
            (($(cat "$work/rss") > peak[$kind])) && peak[$kind]=$(cat "$work/rss")
        fi
    done
done
for kind in off on crowded; do
    median=$(printf '%s' "${samples[$kind]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '  %-8s mean %6.2f ms, median %6.2f ms, peak RSS %s MB (max of 20)\n' "$kind" \
        "$(echo "scale=4; ${total[$kind]} / $runs / 1000000" | bc)" \
        "$(echo "scale=4; $median / 1000000" | bc)" \
        "$(echo "scale=1; ${peak[$kind]} / 1024" | bc)"
done
printf '  ratio    on/off %.2f, crowded/off %.2f (means)\n' \
    "$(echo "scale=4; ${total[on]} / ${total[off]}" | bc)" \
    "$(echo "scale=4; ${total[crowded]} / ${total[off]}" | bc)"

# CPU time is far less disturbed by other load than wall time: the same runs, by kind,
# user + system seconds of the whole loop from GNU time.
echo "==> CPU time (user + system) of $runs runs of each"
declare -A cpu
for kind in off on crowded; do
    /usr/bin/time -f '%U %S' -o "$work/cpu" bash -c \
        'for _ in $(seq "$1"); do "$2" request --config "$3" >/dev/null; done' _ \
        "$runs" "$bin" "$work/$kind.yaml"
    cpu[$kind]=$(awk '{print $1 + $2}' "$work/cpu")
    printf '  %-8s %6.2f ms per run\n' "$kind" "$(echo "scale=4; ${cpu[$kind]} * 1000 / $runs" | bc)"
done
printf '  ratio    on/off %.2f, crowded/off %.2f\n' \
    "$(echo "scale=4; ${cpu[on]} / ${cpu[off]}" | bc)" \
    "$(echo "scale=4; ${cpu[crowded]} / ${cpu[off]}" | bc)"
