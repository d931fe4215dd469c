#!/usr/bin/env bash
# `publish` at fleet scale, and the floor beside it (docs/dev/benchmarks.md).
#
#   tests/bench/publish.sh [--sizes "100 1000 10000"] [--runs 5] [--out DIR]
#
# One sandbox (tests/sandbox/sandbox.sh) for the whole run. For every size N:
#   publish  N records across N/2 hosts (hK.bench.test with the identifiers hK.bench.test and
#            wK.bench.test: N names in the signing zone, no `allow`), fresh values on every
#            run so that every run changes the zone. Wall time of the whole `fleetcert
#            publish` process: validate, render, check, replace, `rndc reload`, wait until
#            the primary and the secondary serve the serial, check all N records on the
#            primary (over TCP).
#   floor    the zone file that publish just wrote, with the serial + 1, written to a
#            temporary file and renamed into place, `rndc reload`, then `dig` each server in
#            turn until it serves that serial: the time BIND itself needs.
# Median of --runs runs each (default 5). Writes DIR/results.tsv and DIR/summary.md and
# prints the summary.
#
# Environment: FLEETCERT (binary, default target/release/fleetcert, built with
# `cargo build --release --locked` first), KEEP=1 keeps the work directory.
set -euo pipefail

PROG=publish.sh
# shellcheck source=tests/bench/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
SELF=$(readlink -f "${BASH_SOURCE[0]}")
FLEETCERT=${FLEETCERT:-}
SIZES="100 1000 10000"
RUNS=5
OUT=

while [ $# -gt 0 ]; do
    case $1 in
    --sizes) SIZES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,20p' "$SELF"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ "$RUNS" -ge 3 ] 2>/dev/null || die "--runs must be 3 or more (a median of fewer says little)"
for n in $SIZES; do
    [ "$n" -ge 2 ] && [ $((n % 2)) -eq 0 ] 2>/dev/null || die "size $n: give even numbers >= 2"
done

release_binary
work_dir bench-publish sandbox
SB=$WORK/sandbox
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT" "$WORK/tokens" "$WORK/logs"

"$SANDBOX" start "$SB" --parent $$ >"$WORK/logs/sandbox.log" 2>&1 ||
    die "the sandbox did not start: $(tail -n 20 "$WORK/logs/sandbox.log")"
# shellcheck disable=SC1091 # written by sandbox.sh start
source "$SB/sandbox.env"

zone_file_config "$SB/sandbox.env" 60 >"$WORK/zone.yaml"

# One publish of N records; prints the wall time in seconds.
run_publish() {
    local n=$1 run=$2 tokens=$WORK/tokens/$1-$2.json start end
    make_tokens "$n" "$SIGNING_ZONE" >"$tokens"
    start=$(now)
    "$FLEETCERT" publish --config "$WORK/zone.yaml" --tokens "$tokens" \
        >"$OUT/publish-$n-$run.json" 2>"$WORK/logs/publish-$n-$run.log" ||
        die "publish of $n records failed (run $run): $(tail -n 3 "$WORK/logs/publish-$n-$run.log")"
    end=$(now)
    grep -q "\"records\": $n," "$OUT/publish-$n-$run.json" ||
        die "publish of $n records reported another count: $(head -c 300 "$OUT/publish-$n-$run.json")"
    elapsed "$start" "$end"
}

# The floor: the current zone with serial + 1, renamed into place, rndc reload, dig both
# servers until they serve it. Prints the wall time in seconds from the reload on.
run_floor() {
    local serial next tmp start end server deadline
    serial=$(serial_at "$PRIMARY")
    next=$((serial + 1))
    tmp=$SIGNING_ZONE_FILE.bench
    awk -v old="$serial" -v new="$next" \
        '!done && / SOA / { sub(" " old " ", " " new " "); done = 1 } { print }' \
        "$SIGNING_ZONE_FILE" >"$tmp"
    grep -q " $next " "$tmp" || die "could not set serial $next in the zone file"
    mv "$tmp" "$SIGNING_ZONE_FILE"
    start=$(now)
    "$RNDC" reload "$SIGNING_ZONE" >/dev/null || die "rndc reload failed"
    deadline=$((SECONDS + 60))
    for server in "$PRIMARY" "$SECONDARY"; do
        until [ "$(serial_at "$server")" = "$next" ]; do
            [ $SECONDS -lt $deadline ] || die "$server does not serve serial $next after 60 s"
        done
    done
    end=$(now)
    elapsed "$start" "$end"
}


printf 'size\tkind\trun\tseconds\n' >"$OUT/results.tsv"
for n in $SIZES; do
    for ((run = 1; run <= RUNS; run++)); do
        printf '%s\tpublish\t%s\t%s\n' "$n" "$run" "$(run_publish "$n" "$run")" >>"$OUT/results.tsv"
        printf '%s\tfloor\t%s\t%s\n' "$n" "$run" "$(run_floor)" >>"$OUT/results.tsv"
    done
done

{
    echo "| records (hosts) | publish, median s | floor, median s | publish − floor, s | runs |"
    echo "| ---: | ---: | ---: | ---: | ---: |"
    for n in $SIZES; do
        p=$(awk -F'\t' -v n="$n" '$1 == n && $2 == "publish" { print $4 }' "$OUT/results.tsv" | median)
        f=$(awk -F'\t' -v n="$n" '$1 == n && $2 == "floor" { print $4 }' "$OUT/results.tsv" | median)
        printf '| %s (%s) | %.3f | %.3f | %.3f | %s |\n' "$n" $((n / 2)) "$p" "$f" \
            "$(awk -v a="$p" -v b="$f" 'BEGIN { print a - b }')" "$RUNS"
    done
} >"$OUT/summary.md"
cat "$OUT/summary.md"
