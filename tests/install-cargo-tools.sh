#!/usr/bin/env bash
# Install the pinned cargo tools the tests and the packaging need, from crates.io:
# cargo-deb builds the Debian package (packaging/build-deb.sh, tests/integration/package.rs);
# cargo-fuzz builds and runs the fuzz targets (tests/fuzz.sh, fuzz/).
#
#   tests/install-cargo-tools.sh           every tool (tests/run.sh)
#   tests/install-cargo-tools.sh cargo-deb only the tools named (tests/demo.sh: cargo-deb)
#
# Idempotent and quiet: a tool already installed at its pinned version is left alone. A tool
# being built prints a line every few seconds with an estimate of what is left.
set -euo pipefail

# name version
TOOLS=(
    "cargo-deb 3.8.0"
    "cargo-fuzz 0.13.2"
)

die() { printf 'install-cargo-tools.sh: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (https://rustup.rs)"

# shellcheck source=tests/progress.sh
source "$(dirname "${BASH_SOURCE[0]}")/progress.sh"

# Seconds `cargo install` takes on 2 idle cores, for the estimate before a rate is known.
declare -A TYPICAL=([cargo-deb]=150 [cargo-fuzz]=120)

wanted=" $* "
for tool in "${TOOLS[@]}"; do
    read -r name version <<<"$tool"
    (($#)) && [[ $wanted != *" $name "* ]] && continue
    # `cargo deb --version` prints "cargo-deb 3.8.0".
    have=$(cargo "${name#cargo-}" --version 2>/dev/null || true)
    [[ " $have" == *" $version" || $have == "$version" ]] && continue
    log=$(mktemp)
    printf '    cargo install %s %s\n' "$name" "$version"
    if ! with_progress "cargo install $name" "${TYPICAL[$name]:-120}" 0 '^$' "$log" -- \
        cargo install --quiet --locked "$name" --version "$version"; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        die "cargo install $name $version failed"
    fi
    rm -f "$log"
done
