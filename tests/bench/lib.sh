# Shared by the benchmarks in tests/bench/ and by tests/soak.sh (sourced, not run): the
# release binary, a work directory that goes away unless KEEP=1, wall-clock helpers,
# medians, token documents and the sandbox's zone config. A script sets PROG (the prefix of
# its messages) before it sources this file.

# shellcheck shell=bash

BENCH_LIB=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$BENCH_LIB")/../.." && pwd)
SANDBOX=$REPO/tests/sandbox/sandbox.sh

die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}

# FLEETCERT as given, else target/release/fleetcert built now.
release_binary() {
    if [ -z "${FLEETCERT:-}" ]; then
        (cd "$REPO" && cargo build --release --locked --quiet) || die "cargo build --release failed"
        FLEETCERT=$REPO/target/release/fleetcert
    fi
    [ -x "$FLEETCERT" ] || die "no executable $FLEETCERT"
}

# work_dir NAME SANDBOX_DIR...: a fresh WORK directory; on exit the sandboxes in it
# (relative to WORK) are stopped and WORK removed, or kept and named when KEEP=1.
work_dir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/fleetcert-$1-XXXXXX")
    shift
    WORK_SANDBOXES=("$@")
    trap cleanup_work EXIT
}

cleanup_work() {
    local sb
    for sb in "${WORK_SANDBOXES[@]}"; do
        "$SANDBOX" stop "$WORK/$sb" >/dev/null 2>&1 || true
    done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# The median and the range of the numbers on stdin, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.3f–%.3f", lo, hi }'; }

# make_tokens N ZONE: token documents for N records over N/2 hosts (hK.bench.test with the
# identifiers hK and wK.bench.test), fresh random values: one JSON array on stdout.
make_tokens() {
    python3 - "$1" "$2" <<'EOF'
import base64, json, os, sys
n, zone = int(sys.argv[1]), sys.argv[2]
def value():
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
docs = []
for k in range(1, n // 2 + 1):
    ids = [f"h{k}.bench.test", f"w{k}.bench.test"]
    docs.append({"version": 1, "host": f"h{k}.bench.test",
                 "records": [{"name": f"{i}.{zone}.", "value": value(), "cert": "main",
                              "identifier": i} for i in ids],
                 "certs": [{"name": "main", "status": "pending", "not_after": None,
                            "reason": "benchmark"}]})
json.dump(docs, sys.stdout)
EOF
}

# zone_file_config ENV TIMEOUT_S: the zone config publishing by zone file into the sandbox
# whose sandbox.env is ENV (its zone file, rndc, both servers), on stdout.
zone_file_config() {
    (
        # shellcheck disable=SC1090 # written by sandbox.sh start
        source "$1"
        cat <<EOF
zone: $SIGNING_ZONE
zone_file: $SIGNING_ZONE_FILE
soa: {mname: ns1.example.test., rname: hostmaster.example.test.}
nameservers: [ns1.example.test., ns2.example.test.]
reload: [$RNDC, reload, $SIGNING_ZONE]
servers: [$PRIMARY, $SECONDARY]
timeout: ${2}s
EOF
    )
}

# The SOA serial of SIGNING_ZONE that SERVER (ip:port) serves, empty when it does not answer.
serial_at() {
    dig +short +norec +time=1 +tries=1 -p "${1##*:}" "@${1%:*}" "${SIGNING_ZONE:-acme.test}" SOA 2>/dev/null |
        awk '{ print $3 }'
}
