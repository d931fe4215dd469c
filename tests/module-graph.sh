#!/usr/bin/env bash
# Checks that the crate's modules form no import cycle (issue 9), with crates.io's
# cargo-modules for the graph and tests/tools/module_cycles.py for the check.
#
# `cargo modules dependencies --acyclic` itself cannot say it: at item level it calls every
# type whose methods name `Self` a cycle (`StoreError` <-> `StoreError::io`), and with the item
# filters on it prints an empty graph. So the whole graph is exported, every "uses" edge is
# lifted to the modules of its two ends (a child using its parent's item and a parent
# re-exporting its child's are the module's own structure), and the strongly connected
# components of that graph, and of the top-level modules', must all be single modules.
#
# Not part of tests/run.sh: installing cargo-modules builds rust-analyzer's crates, about ten
# minutes on two cores. cargo-modules sees only `use` declarations, not an inline
# `super::x::f(..)` in a function body: tests/run.sh runs the same check on the source itself
# (`tests/tools/module_cycles.py src`), which sees both; this script is the cross-check.
# Usage: tests/module-graph.sh   (installs cargo-modules 0.27 if missing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo-modules >/dev/null; then
    # 0.28 needs rustc 1.98; this toolchain is 1.95.
    cargo install cargo-modules --version 0.27.0 --locked
fi
graph=$(mktemp)
trap 'rm -f "$graph"' EXIT
cargo modules dependencies --lib --no-externs --no-sysroot >"$graph"
report=$(python3 tests/tools/module_cycles.py "$graph")
printf '%s\n' "$report"
grep -q '^top-level cycles: 0$' <<<"$report" && grep -q '^modules: .*cycles: 0$' <<<"$report" || {
    echo "module graph: a cycle (above)" >&2
    exit 1
}
echo "module graph: no cycle"
