#!/usr/bin/env bash
# The soak (issue 11, docs/dev/crash-safety.md): CYCLES daily runs of the whole flow on a sandbox
# of its own, every certificate renewed every cycle, while Pebble rejects nonces and the BIND
# secondary is stopped and started at random moments.
#
# Usage: tests/soak.sh [CYCLES]        (default 30; tests/run.sh runs 3)
#
# A cycle is one day of the playbook: `request` on every host (in parallel), one `publish` of
# every document, `finalize` on every host (in parallel; also after a publish that ended with
# exit 3, as the zone is on the primary). Each cycle changes every host's key type, so every
# certificate is due every cycle. In a cycle chosen at random (never two in a row, never the
# last; always the second) a chaos process stops the secondary at a random moment and starts it again a random
# time later, before the cycle ends.
#
# It fails (exit 1, naming the cycle, the host and the check) unless:
#   - after every step, every certificate issued so far is a complete set a service can use:
#     all files there, key matching certificate, full chain = certificate + chain, `openssl
#     verify` against Pebble's root, key 0640 with the key group, no temporary file where a
#     service looks (so no cycle lost an old certificate);
#   - every command ended with 0, or with 1 or 3 naming the cause (a failed certificate's
#     reason in the report, the lagging server on stderr); never 2 or 4;
#   - a cycle after a failed one ends with every command 0 and every certificate of the key
#     type that cycle asks for (renewed then, or already in the failed cycle).
#
# Environment: SOAK_SEED (the random seed, printed; set it to replay a run),
# SOAK_NONCE_REJECT (Pebble's PEBBLE_WFE_NONCEREJECT, default 50 %), SOAK_KEEP=1 (keep the
# working directory), SOAK_CARGO_FLAGS (extra `cargo build` flags; tests/run.sh passes the
# feature and the test target of its crash-points step so that nothing is rebuilt —
# FLEETCERT_CRASH_AT is never set).
set -euo pipefail

cycles=${1:-30}
[[ $cycles =~ ^[1-9][0-9]*$ ]] || { echo "usage: tests/soak.sh [CYCLES]" >&2; exit 2; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seed=${SOAK_SEED:-$((RANDOM * 32768 + RANDOM))}
RANDOM=$seed
nonce_reject=${SOAK_NONCE_REJECT:-50}
unset FLEETCERT_CRASH_AT
PROG=soak
# The sandbox's zone config (zone_file_config), as the benchmarks write it.
# shellcheck source=tests/bench/lib.sh
source "$repo/tests/bench/lib.sh"
# How long publish waits for the servers: a stopped secondary costs this much.
publish_timeout=8

work=$(mktemp -d "${TMPDIR:-/tmp}/fleetcert-soak-XXXXXX")
sandbox=$work/sandbox
failed=0
cleanup() {
    "$repo/tests/sandbox/sandbox.sh" stop "$sandbox" >/dev/null 2>&1 || true
    if ((failed)) || [[ ${SOAK_KEEP:-} == 1 ]]; then
        echo "soak: working directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

say() { printf 'soak: %s\n' "$*"; }
violation() {
    failed=1
    printf 'soak: FAILED in cycle %s: %s\n' "$cycle" "$*" >&2
    exit 1
}

# shellcheck disable=SC2086 # SOAK_CARGO_FLAGS is a list of flags
cargo build --locked --quiet --bin fleetcert ${SOAK_CARGO_FLAGS:-} --manifest-path "$repo/Cargo.toml"
bin=$repo/target/debug/fleetcert
"$repo/tests/sandbox/sandbox.sh" start "$sandbox" --parent $$ \
    --pebble-env "PEBBLE_WFE_NONCEREJECT=$nonce_reject" --pebble-env PEBBLE_AUTHZREUSE=0 >/dev/null
# shellcheck source=/dev/null
source "$sandbox/sandbox.env"
grep -q "reject $nonce_reject% of good nonces" "$sandbox/logs/pebble.log" ||
    { echo "soak: Pebble does not say it rejects $nonce_reject % of nonces" >&2; exit 1; }
say "seed $seed, $cycles cycles, Pebble rejects $nonce_reject % of nonces, sandbox $sandbox"

# --- the fleet ----------------------------------------------------------------------------
# host -> "layout keyA keyB cert=name,name cert=name..."; every name is delegated in the
# sandbox's production zone.
declare -A fleet=(
    [host201.example.test]="fleetcert ecdsa-p256 ecdsa-p384 main=host201.example.test,www201.example.test api=www202.example.test"
    [host203.example.test]="acme.sh ecdsa-p384 ecdsa-p256 main=host203.example.test"
    [host204.example.test]="fleetcert rsa-2048 ecdsa-p256 main=host204.example.test,www204.example.test"
)
hosts=("${!fleet[@]}")
key_group=daemon
key_gid=$(getent group "$key_group" | cut -d: -f3)

# The key type host $1 wants in cycle $2.
wanted_key() {
    local spec=(${fleet[$1]})
    if (($2 % 2)); then echo "${spec[2]}"; else echo "${spec[1]}"; fi
}

# The bit size of a key type, as `openssl pkey -text` prints it.
key_bits() {
    case $1 in
    ecdsa-p256) echo 256 ;; ecdsa-p384) echo 384 ;; rsa-2048) echo 2048 ;; rsa-3072) echo 3072 ;;
    *) echo "unknown key type $1" >&2; exit 2 ;;
    esac
}

write_host_config() {
    local host=$1 cycle=$2 spec=(${fleet[$1]}) dir=$work/hosts/$1 item
    mkdir -p "$dir"
    {
        printf 'acme: {directory: %s, email: ops@example.test, agree_tos: true, ca_bundle: %s}\n' \
            "$ACME_DIRECTORY" "$CA_BUNDLE"
        printf 'host: %s\nsigning_zone: %s\nresolver: %s\n' "$host" "$SIGNING_ZONE" "$RESOLVER"
        printf 'state_dir: %s/state\ncert_dir: %s/certs\ngroup: %s\nlayout: %s\nkey: %s\n' \
            "$dir" "$dir" "$key_group" "${spec[0]}" "$(wanted_key "$host" "$cycle")"
        printf 'certs:\n'
        for item in "${spec[@]:3}"; do
            printf '  %s: [%s]\n' "${item%%=*}" "${item#*=}"
        done
    } >"$dir/fleetcert.yaml"
}

zone_file_config "$sandbox/sandbox.env" "$publish_timeout" >"$work/zone.yaml"

# "cert path-of-key path-of-cert path-of-chain path-of-fullchain" for every certificate of $1.
cert_files() {
    local host=$1 spec=(${fleet[$1]}) dir=$work/hosts/$1/certs item cert first
    for item in "${spec[@]:3}"; do
        cert=${item%%=*} first=${item#*=} first=${first%%,*}
        if [[ ${spec[0]} == acme.sh ]]; then
            printf '%s %s %s %s %s\n' "$cert" "$dir/$first/$first.key" "$dir/$first/$first.cer" \
                "$dir/$first/ca.cer" "$dir/$first/fullchain.cer"
        else
            printf '%s %s %s %s %s\n' "$cert" "$dir/$cert/privkey.pem" "$dir/$cert/cert.pem" \
                "$dir/$cert/chain.pem" "$dir/$cert/fullchain.pem"
        fi
    done
}

# --- the checks ---------------------------------------------------------------------------

declare -A issued=() fingerprint=()

# Every certificate issued so far is a complete, consistent set a service can use ($1: when).
check_sets() {
    local when=$1 host cert key crt chain full current temps
    for host in "${hosts[@]}"; do
        while read -r cert key crt chain full; do
            local id="$host/$cert"
            if [[ ! -e $key && ! -e $crt && -z ${issued[$id]:-} ]]; then
                continue
            fi
            for file in "$key" "$crt" "$chain" "$full"; do
                [[ -f $file ]] || violation "$when: $id: $file is missing"
            done
            cmp -s <(cat "$crt" "$chain") "$full" ||
                violation "$when: $id: the full chain is not certificate + chain"
            [[ $(openssl pkey -pubout -in "$key") == $(openssl x509 -noout -pubkey -in "$crt") ]] ||
                violation "$when: $id: the key does not match the certificate"
            openssl verify -CAfile "$PEBBLE_ROOT" -untrusted "$chain" "$crt" >/dev/null 2>&1 ||
                violation "$when: $id: the chain does not verify against Pebble's root"
            [[ $(stat -L -c '%a %g' "$key") == "640 $key_gid" ]] ||
                violation "$when: $id: the key is $(stat -L -c '%a %g' "$key"), not 640 $key_gid"
            current=$(dirname "$key")/..data
            temps=$(find "$(dirname "$key")" "$current/" -maxdepth 1 -name '*.tmp.*' 2>/dev/null || true)
            [[ -z $temps ]] || violation "$when: $id: temporary files where a service looks: $temps"
            issued[$id]=1
        done < <(cert_files "$host")
    done
}

# Whether the command's exit code $1 is one the contract allows, with its cause named.
# $2: command, $3: report file, $4: stderr file.
check_exit() {
    local code=$1 command=$2 report=$3 stderr=$4
    case $code in
    0) return 0 ;;
    1)
        grep -q '"status": "failed"' "$report" && grep -Eq '"(error|reason)": "[^"]+' "$report" ||
            violation "$command exit 1 without a failed certificate and its cause in the report"
        grep -Eo '"error": "[^"]+' "$report" | sed "s/^\"error\": \"/    $command: /" >>"$day/causes"
        ;;
    3)
        [[ $command == publish* ]] && grep -q "$SECONDARY\|$PRIMARY" "$stderr" ||
            violation "$command exit 3 without naming the lagging server: $(tail -1 "$stderr")"
        printf '    %s: %s\n' "$command" "$(tail -1 "$stderr" | cut -c1-200)" >>"$day/causes"
        ;;
    *) violation "$command exit $code: $(tail -1 "$stderr")" ;;
    esac
    return 1
}

# --- chaos ---------------------------------------------------------------------------------

# Stops the secondary after a random moment (0-2 s into the cycle) and starts it again a
# random time later (0.5-12 s: sometimes within publish's timeout, sometimes not); logs what
# it did.
chaos() {
    local before down
    before=$(awk -v r=$((RANDOM % 2000)) 'BEGIN { print r / 1000 }')
    down=$(awk -v r=$((RANDOM % 11500)) 'BEGIN { print 0.5 + r / 1000 }')
    sleep "$before"
    "$repo/tests/sandbox/sandbox.sh" stop-server "$sandbox" secondary >/dev/null
    sleep "$down"
    "$repo/tests/sandbox/sandbox.sh" start-server "$sandbox" secondary >/dev/null
    printf 'secondary stopped at +%ss for %ss' "$before" "$down"
}

# --- the cycles ----------------------------------------------------------------------------

# Runs `fleetcert $1` on every host at once, as the playbook's hosts run, into
# $day/<host>.$1.{json,err}; sets `codes` (one digit per host) and `cycle_failed`.
on_every_host() {
    local command=$1 host code
    local -A pids=()
    for host in "${hosts[@]}"; do
        "$bin" "$command" --config "$work/hosts/$host/fleetcert.yaml" \
            >"$day/$host.$command.json" 2>"$day/$host.$command.err" &
        pids[$host]=$!
    done
    codes=""
    for host in "${hosts[@]}"; do
        code=0
        wait "${pids[$host]}" || code=$?
        codes+="$code"
        check_exit "$code" "$command on $host" "$day/$host.$command.json" \
            "$day/$host.$command.err" || cycle_failed=1
    done
}

declare -a summary=()
previous_failed=0 previous_chaos=0 total_failed=0 total_renewed=0 total_certs=0 total_chaos=0
started=$SECONDS
for ((cycle = 1; cycle <= cycles; cycle++)); do
    day=$work/cycles/$cycle
    mkdir -p "$day"
    for host in "${hosts[@]}"; do
        write_host_config "$host" "$cycle"
    done
    with_chaos=0
    # Cycle 2 always, so that even 3 cycles meet the chaos; later ones at random.
    if ((cycle > 1 && cycle < cycles && !previous_chaos && (cycle == 2 || RANDOM % 2))); then
        with_chaos=1
        chaos >"$day/chaos.log" 2>&1 &
        chaos_pid=$!
    fi
    cycle_failed=0

    on_every_host request
    request_codes=$codes
    check_sets "after request"

    tokens=()
    for host in "${hosts[@]}"; do
        tokens+=(--tokens "$host=$day/$host.request.json")
    done
    publish_code=0
    "$bin" publish --config "$work/zone.yaml" "${tokens[@]}" >"$day/publish.json" \
        2>"$day/publish.err" || publish_code=$?
    check_exit "$publish_code" publish "$day/publish.json" "$day/publish.err" || cycle_failed=1
    check_sets "after publish"

    on_every_host finalize
    finalize_codes=$codes
    chaos_said="-"
    if ((with_chaos)); then
        wait "$chaos_pid" || violation "the chaos process failed: $(cat "$day/chaos.log")"
        chaos_said=$(cat "$day/chaos.log")
    fi
    check_sets "after finalize"

    # Current: the key type this cycle's config asks for (a certificate that failed to renew
    # in the cycle before may already have it, and is then rightly left alone). Renewed: a
    # new certificate.
    renewed=0 current=0 certs=0
    for host in "${hosts[@]}"; do
        bits=$(key_bits "$(wanted_key "$host" "$cycle")")
        while read -r cert key crt _; do
            certs=$((certs + 1))
            print=$(openssl x509 -noout -fingerprint -sha256 -in "$crt" 2>/dev/null || true)
            text=$(openssl pkey -in "$key" -noout -text 2>/dev/null || true)
            [[ $text == *"($bits bit"* ]] && current=$((current + 1))
            [[ -n $print && $print != "${fingerprint[$host/$cert]:-}" ]] && renewed=$((renewed + 1))
            fingerprint[$host/$cert]=$print
        done < <(cert_files "$host")
    done
    total_renewed=$((total_renewed + renewed)) total_certs=$((total_certs + certs))
    if ((current < certs)); then
        cycle_failed=1
    fi
    if ((previous_failed && cycle_failed)); then
        violation "the cycle after a failed one did not recover: request $request_codes, publish $publish_code, finalize $finalize_codes, $current/$certs with this cycle's key type"
    fi
    ((cycle_failed)) && total_failed=$((total_failed + 1))
    total_chaos=$((total_chaos + with_chaos))
    line=$(printf 'cycle %2d: request %s publish %s finalize %s renewed %d/%d current %d/%d %s  chaos: %s' \
        "$cycle" "$request_codes" "$publish_code" "$finalize_codes" "$renewed" "$certs" \
        "$current" "$certs" \
        "$( ((cycle_failed)) && echo FAILED || echo ok)" "$chaos_said")
    summary+=("$line")
    say "$line"
    [[ ! -s $day/causes ]] || cat "$day/causes"
    previous_failed=$cycle_failed previous_chaos=$with_chaos
done

say "done in $((SECONDS - started)) s: $cycles cycles, $total_chaos with the secondary stopped, $total_failed failed (each followed by a cycle that recovered), $total_renewed/$total_certs renewals, every set consistent after every step (seed $seed)"
