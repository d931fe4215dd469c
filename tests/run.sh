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

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings (without and with the crash points)"
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --all-targets --locked --features crash-points -- -D warnings

# The release build takes minutes on 2 cores: done here, alone, rather than inside the
# package test while the other tests run (it runs build-deb.sh again, which then only packs).
step "the Debian package (packaging/build-deb.sh: release build, man pages, completions)"
packaging/build-deb.sh --quiet

step "cargo test (unit and integration, against the real sandbox)"
# Tests mostly wait on servers, not on the CPU: more threads than cores keeps the suite short.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
# One test binary for everything: with crash-points it behaves exactly as without unless
# FLEETCERT_CRASH_AT names a point, which only tests/integration/crash.rs sets.
cargo test --locked --features crash-points "$@"

# The soak runs with the whole suite, not with a test filter.
if (($# == 0)); then
    step "soak: 3 daily cycles (tests/soak.sh, docs/crash-safety.md)"
    # The test build's features, so that the soak's `cargo build` rebuilds nothing.
    SOAK_CARGO_FLAGS="--features crash-points" tests/soak.sh 3
fi
