#!/usr/bin/env bash
# The whole suite with a CPU hog beside it: shows that no test fails because the machine is
# busy (CI machines are shared). Not part of tests/run.sh, which it runs; a measurement to
# repeat after a change to the sandbox, the deadlines or the playbook tests.
#
# The hog is stress-ng with two busy workers per core (`--cpu 2×nproc`), started in its own
# process group and stopped with it whatever the suite's end. Its own counters (bogo ops) are
# printed at the end, so the note can say how much CPU it really took.
#
# Usage: tests/under-load.sh [workers per core, default 2] [tests/run.sh arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

per_core=${1:-2}
shift || true
if ! command -v stress-ng >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q stress-ng >/dev/null
fi
workers=$(($(nproc) * per_core))
log=$(mktemp -t fleetcert-stress.XXXXXX)
setsid stress-ng --cpu "$workers" --metrics-brief --log-file "$log" >/dev/null 2>&1 &
hog=$!
# Stop the hog with the suite, also on Ctrl-C or a failed test.
trap 'kill -TERM -- -"$hog" 2>/dev/null || true; wait "$hog" 2>/dev/null || true; cat "$log"; rm -f "$log"' EXIT
printf '==> stress-ng --cpu %s beside the suite (pid %s)\n' "$workers" "$hog"
start=$(date +%s)
status=0
tests/run.sh "$@" || status=$?
printf '==> suite exit %s after %s s with the hog running; load: %s\n' \
    "$status" "$(($(date +%s) - start))" "$(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
