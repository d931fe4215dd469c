#!/usr/bin/env bash
# Install the pinned cargo tools the tests and the packaging need, from crates.io:
# cargo-deb builds the Debian package (packaging/build-deb.sh, tests/integration/package.rs);
# cargo-fuzz builds and runs the fuzz targets (tests/fuzz.sh, fuzz/).
#
# Idempotent and quiet: a tool already installed at its pinned version is left alone.
set -euo pipefail

# name version
TOOLS=(
    "cargo-deb 3.8.0"
    "cargo-fuzz 0.13.2"
)

die() { printf 'install-cargo-tools.sh: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (https://rustup.rs)"

for tool in "${TOOLS[@]}"; do
    read -r name version <<<"$tool"
    # `cargo deb --version` prints "cargo-deb 3.8.0".
    have=$(cargo "${name#cargo-}" --version 2>/dev/null || true)
    [[ " $have" == *" $version" || $have == "$version" ]] && continue
    log=$(mktemp)
    if ! cargo install --quiet --locked "$name" --version "$version" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        die "cargo install $name $version failed"
    fi
    rm -f "$log"
done
