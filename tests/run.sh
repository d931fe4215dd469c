#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: install what is missing, check formatting and
# lints, then run the unit and integration tests against real Pebble, Unbound and BIND.
#
# Usage: tests/run.sh [extra cargo test arguments, e.g. a test name filter]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

step() { printf '\n==> %s\n' "$*"; }

step "installing what is missing (Debian packages, Python tools, cargo-deb)"
tests/sandbox/install.sh
tests/install-python.sh
tests/install-cargo-tools.sh
export PATH="$repo/.venv/bin:$PATH"

step "module cycles, through every path (tests/tools/module_cycles.py, its tests first)"
python3 -m unittest discover -s tests/tools -p 'test_module_cycles.py' && python3 tests/tools/module_cycles.py src

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings (without and with the crash points)"
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --all-targets --locked --features crash-points -- -D warnings

# The release build takes minutes on 2 cores: done here, alone, rather than inside the
# package test while the other tests run (it runs build-deb.sh again, which then only packs).
step "the Debian package (packaging/build-deb.sh: release build, man pages, completions)"
packaging/build-deb.sh --quiet

# The fuzz targets' cold build (about 3 minutes of both cores) runs beside the tests at the
# lowest priority: the integration tests mostly wait on their servers, and it takes only
# the CPU they leave idle (a test never waits for it), so the fuzz step below finds it done
# or nearly. Its own session, so that it can be raised or stopped as a whole.
fuzz_build=
if (($# == 0)); then
    FUZZ_PROFILE=dev setsid nice -n 19 tests/fuzz.sh build >target/fuzz-build.log 2>&1 </dev/null &
    fuzz_build=$!
    trap '[[ -z $fuzz_build ]] || kill -- "-$fuzz_build" 2>/dev/null || true' EXIT
fi

step "cargo test (unit and integration, against the real sandbox)"
# Tests mostly wait on servers, not on the CPU: more threads than cores keeps the suite short.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cargo test --locked "$@"

# Every test that kills the binary at a crash point (tests/integration/crash.rs and its
# modules, and the keystore's), in one build with the test-only feature; without it they are
# ignored above.
step "cargo test --features crash-points (every crash point: crash::, keystore::a_finalize_killed)"
cargo test --locked --features crash-points --test integration -- crash:: keystore::a_finalize_killed

# The soak runs with the whole suite, not with a test filter. Its `cargo build` gets the
# feature and the test target, so that it resolves features as the step above did (with the
# dev-dependencies) and reuses that binary instead of compiling fleetcert again.
if (($# == 0)); then
    step "soak: 3 daily cycles (tests/soak.sh, docs/dev/crash-safety.md)"
    SOAK_CARGO_FLAGS="--features crash-points --test integration" tests/soak.sh 3
fi

# The dev build of the targets: a cold release sanitizer build costs twice the CPU and the
# wall time (about 3 minutes more on 2 cores, docs/dev/fuzzing.md); 20 s is a smoke run.
if (($# == 0)); then
    step "fuzzing (tests/fuzz.sh, dev build: each target 20 s; docs/dev/fuzzing.md)"
    # Nothing else runs now: the build, if not done, gets its normal priority back (root
    # may raise it; otherwise it goes on at 19, which on an idle machine is the same).
    renice -n 0 -g "$fuzz_build" >/dev/null 2>&1 || true
    if ! wait "$fuzz_build"; then
        fuzz_build=
        tail -n 40 target/fuzz-build.log >&2
        printf 'run.sh: the fuzz build failed (target/fuzz-build.log)\n' >&2
        exit 1
    fi
    fuzz_build=
    # 20 s: the slowest target (zone_render, about 60 inputs a second) replays its whole
    # committed corpus in about 15 s; the long runs are tests/fuzz.sh's own.
    FUZZ_PROFILE=dev FUZZ_GROW=0 tests/fuzz.sh all 20
fi
