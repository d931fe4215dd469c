#!/usr/bin/env bash
# Build the Debian package of fleetcert (docs/install.md): the man pages and shell completions
# generated from src/cli.rs (examples/package-assets.rs) into target/package-assets/, then
# cargo-deb with [package.metadata.deb] of Cargo.toml (a release build of the binary).
#
#   packaging/build-deb.sh [cargo-deb arguments, e.g. --no-build]
#
# Prints the path of the .deb (target/debian/fleetcert_<version>-1_<arch>.deb) on stdout.
# cargo-deb comes from crates.io: tests/install-cargo-tools.sh installs the pinned version.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

die() { printf 'build-deb.sh: %s\n' "$*" >&2; exit 1; }

cargo deb --version >/dev/null 2>&1 ||
    die "cargo-deb not found: tests/install-cargo-tools.sh installs it (cargo install cargo-deb --locked)"

assets=target/package-assets
rm -rf "$assets"
cargo run --quiet --locked --example package-assets -- "$assets" >&2
# The upstream changelog where Debian policy (12.7) puts it, compressed, no timestamp.
gzip -9n <CHANGELOG.md >"$assets/changelog.gz"
# --strip: the release profile keeps line tables for backtraces; the package ships none.
cargo deb --locked --strip "$@"
