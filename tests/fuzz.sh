#!/usr/bin/env bash
# Runs fleetcert's fuzz targets (fuzz/, cargo fuzz with libFuzzer) for a given time each.
#
#   tests/fuzz.sh TARGET|all SECONDS   run each target for SECONDS, one after another
#   tests/fuzz.sh build                build every target (what a run does first)
#   tests/fuzz.sh minimize TARGET|all  shrink the corpus to the inputs that add coverage
#                                      (cargo fuzz cmin), keeping the seed-* files
#   tests/fuzz.sh install              install cargo-fuzz (pinned) if it is missing
#   tests/fuzz.sh list                 the targets
#
# The corpus of each target lives in fuzz/corpus/TARGET (seeded from real token documents,
# configs, zones and chains, and grown by every run); a crash lands in fuzz/artifacts/TARGET
# and fails the run. The summary line per target gives executions, executions per second,
# corpus size and crashes. The corpus kept in git is the minimized one (docs/dev/fuzzing.md).
# The machine has one stable toolchain: RUSTC_BOOTSTRAP=1 lets it build with the sanitizer
# flags cargo fuzz passes (docs/dev/fuzzing.md).
#
# Environment: FUZZ_RSS_LIMIT_MB (default 2048), FUZZ_TIMEOUT (seconds per input, default 10),
# FUZZ_GROW (default 1; 0: what a run finds goes to a scratch directory that is removed, so a
# CI run reads the committed corpus and leaves the work tree as it was),
# FUZZ_PROFILE: `release` (default: optimized, debug assertions, address sanitizer; for the
# long runs) or `dev` (unoptimized, same instrumentation: half the CPU and half the wall time
# to build cold, 10 to 25 times slower to run; what CI's 30-second runs use, docs/dev/fuzzing.md).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The same pin as tests/install-cargo-tools.sh, which tests/run.sh's install step runs.
CARGO_FUZZ_VERSION=0.13.2
TARGETS=(token_documents host_config zone_config zone_render zone_check pem_chain)

die() { printf 'fuzz.sh: %s\n' "$*" >&2; exit 2; }

# The build flags of FUZZ_PROFILE, the same for build, run and cmin (cargo fuzz builds again
# before it runs: other flags would mean another build).
case ${FUZZ_PROFILE:-release} in
release) PROFILE=() ;; # the default: optimized, with debug assertions (-O drops them)
dev) PROFILE=(--dev) ;;
*) die "FUZZ_PROFILE is release or dev, not ${FUZZ_PROFILE}" ;;
esac

install() {
    if [[ $(cargo fuzz --version 2>/dev/null) == "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
        return
    fi
    printf 'fuzz.sh: installing cargo-fuzz %s from crates.io\n' "$CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
}

run_target() {
    local target=$1 seconds=$2 log
    mkdir -p "corpus/$target" "artifacts/$target"
    log=$(mktemp)
    local before dirs=("corpus/$target") scratch=
    before=$(find "artifacts/$target" -type f | wc -l)
    if [[ ${FUZZ_GROW:-1} == 0 ]]; then
        # libFuzzer writes new inputs into the first directory and only reads the others.
        scratch=$(mktemp -d)
        dirs=("$scratch" "corpus/$target")
    fi
    # stdin and stdout from /dev/null: an input naming /dev/stdin must not wait for a tty.
    if ! cargo fuzz run "${PROFILE[@]}" "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-2048}" \
        -timeout="${FUZZ_TIMEOUT:-10}" -print_final_stats=1 </dev/null >"$log" 2>&1; then
        # The panic message and the reproduction hint (the input's bytes sit between them).
        grep -m 1 -A 2 'panicked at\|ERROR: AddressSanitizer\|ERROR: libFuzzer' "$log" >&2 || true
        tail -n 12 "$log" >&2
        rm -rf "$log" ${scratch:+"$scratch"}
        die "$target found a crash: see fuzz/artifacts/$target and make it a test"
    fi
    local execs rate crashes corpus
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    corpus=$(find "${dirs[@]}" -type f | wc -l)
    crashes=$(($(find "artifacts/$target" -type f | wc -l) - before))
    printf '%-16s %5ss  %12s executions  %6s/s  %6s inputs in the corpus  %s crashes\n' \
        "$target" "$seconds" "${execs:-?}" "${rate:-?}" "$corpus" "$crashes"
    rm -rf "$log" ${scratch:+"$scratch"}
    ((crashes == 0)) || die "$target left a crash in fuzz/artifacts/$target"
}

minimize_target() {
    local target=$1 seeds before
    seeds=$(mktemp -d)
    before=$(find "corpus/$target" -type f | wc -l)
    # The seeds are real documents a reader should find in the corpus, covered or not.
    find "corpus/$target" -maxdepth 1 -type f -name 'seed-*' -exec cp {} "$seeds/" \;
    if ! cargo fuzz cmin "${PROFILE[@]}" "$target" "corpus/$target" </dev/null >"$seeds.log" 2>&1; then
        tail -n 20 "$seeds.log" >&2
        rm -rf "$seeds" "$seeds.log"
        die "cargo fuzz cmin $target failed"
    fi
    cp "$seeds"/* "corpus/$target/" 2>/dev/null || true
    rm -rf "$seeds" "$seeds.log"
    printf '%-16s minimized: %6s -> %6s inputs in the corpus\n' \
        "$target" "$before" "$(find "corpus/$target" -type f | wc -l)"
}

# The targets named by $1: every one for `all`.
select_targets() {
    case $1 in
    all) selected=("${TARGETS[@]}") ;;
    *)
        [[ " ${TARGETS[*]} " == *" $1 "* ]] || die "no target $1 (tests/fuzz.sh list)"
        selected=("$1")
        ;;
    esac
}

# A function, read whole before it runs: editing this file while a long run is under way
# (a `git checkout`, a merge) cannot make bash execute a line from the new text.
main() {
    local selected=() target mode=run seconds
    case ${1:-} in
    install) install; return ;;
    list) printf '%s\n' "${TARGETS[@]}"; return ;;
    '' | -h | --help) sed -n '4,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    build) mode=build ;;
    minimize) mode=minimize; select_targets "${2:-all}" ;;
    *)
        select_targets "$1"
        seconds=${2:-}
        [[ $seconds =~ ^[0-9]+$ ]] || die "give the seconds per target: tests/fuzz.sh $1 SECONDS"
        ;;
    esac
    install
    cd "$repo/fuzz"
    export RUSTC_BOOTSTRAP=1
    # One build for every target (debug assertions, address sanitizer, FUZZ_PROFILE).
    cargo fuzz build "${PROFILE[@]}"
    for target in "${selected[@]}"; do
        if [[ $mode == minimize ]]; then
            minimize_target "$target"
        else
            run_target "$target" "$seconds"
        fi
    done
}

# On one line: bash has read `exit` before main runs, so nothing after it is read from a file
# that changed meanwhile.
main "$@"; exit
