#!/usr/bin/env bash
# fleetcert integration-test sandbox: real DNS and ACME servers on 127.0.0.1, nothing mocked.
#
#   sandbox.sh start DIR [--pebble-env K=V]... [--pebble-eab KID=HMAC]...
#                        [--tsig [ALGORITHM:]NAME=SECRET[@RECORD,...]]... [--parent PID]
#                        [--dnssec [--no-validation]] [--fallback-ca KID=HMAC]
#   sandbox.sh stop DIR
#   sandbox.sh trust-anchor DIR right|wrong
#   sandbox.sh stop-server DIR primary|secondary|unbound|pebble|fallback
#   sandbox.sh start-server DIR primary|secondary|unbound|pebble|fallback
#   sandbox.sh status DIR
#
# `start` runs a BIND primary and a BIND secondary (zones example.test and acme.test), an
# Unbound resolver with stub zones pointing at both, and Pebble using that resolver; it
# waits until all of them answer and then writes DIR/sandbox.env. See docs/dev/sandbox.md.
#
# Environment: SANDBOX_TIMEOUT (seconds to wait for each server, default 120: a guard against a
# hang; `logs/start.log` says every 10 s which server it still waits for).
set -euo pipefail

# named, unbound and rndc live in /usr/sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
SELF=$(readlink -f "${BASH_SOURCE[0]}")
SERVERS=(primary secondary unbound pebble fallback)
PRODUCTION_ZONE=example.test
SIGNING_ZONE=acme.test
TIMEOUT=${SANDBOX_TIMEOUT:-120}
START_ATTEMPTS=5
PROG=sandbox
COMMANDS=(stop-server start-server status trust-anchor)
# shellcheck source=tests/sandbox/lib.sh
source "${SELF%/*}/lib.sh"

usage() {
    sed -n '4,9s/^# \{0,1\}//p' "$SELF" >&2
    exit 2
}

# --- ports -------------------------------------------------------------------------------

load_ports() {
    [[ -r $DIR/ports.env ]] || die "$DIR is not a sandbox (no ports.env): was it started?"
    # shellcheck source=/dev/null
    source "$DIR/ports.env"
}

all_ports() {
    printf '%s\n' "${PRIMARY_PORT:-}" "${RNDC_PORT:-}" "${SECONDARY_PORT:-}" \
        "${RESOLVER_PORT:-}" "${ACME_PORT:-}" "${PEBBLE_MGMT_PORT:-}" \
        "${FALLBACK_PORT:-}" "${FALLBACK_MGMT_PORT:-}" | grep . || true
}

# --- configuration -----------------------------------------------------------------------

# The head of a zone of the sandbox's own: TTL, SOA (serial 1), two name servers ns1 and ns2
# on 127.0.0.1.
zone_head() {
    cat <<EOF
\$TTL 60
@	IN	SOA	ns1.$1. hostmaster.$1. 1 3600 600 864000 60
@	IN	NS	ns1.$1.
@	IN	NS	ns2.$1.
ns1	IN	A	127.0.0.1
ns2	IN	A	127.0.0.1
EOF
}

# Everything that does not depend on the ports: made once per sandbox.
write_static_files() {
    mkdir -p "$DIR"/{primary,secondary,unbound,pids,logs}

    # Pebble's HTTPS certificate, from a CA of our own: ca.pem is a single self-signed
    # certificate, what instant-acme's builder_with_root() expects.
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$DIR/ca.key" -out "$DIR/ca.pem" -days 30 -subj "/CN=fleetcert sandbox CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$DIR/logs/openssl.log" ||
        fail_static "openssl could not make the harness CA"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$DIR/pebble-key.pem" -out "$DIR/pebble.csr" -subj "/CN=localhost" \
        2>>"$DIR/logs/openssl.log" || fail_static "openssl could not make Pebble's key"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        >"$DIR/pebble-cert.ext"
    openssl x509 -req -in "$DIR/pebble.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" \
        -CAcreateserial -CAserial "$DIR/ca.srl" -days 30 -extfile "$DIR/pebble-cert.ext" \
        -out "$DIR/pebble-cert.pem" 2>>"$DIR/logs/openssl.log" ||
        fail_static "openssl could not sign Pebble's certificate"

    # rndc key: 32 random bytes, as tsig-keygen would make, without another process.
    local secret
    secret=$(head -c 32 /dev/urandom | base64)
    printf 'key "sandbox-rndc" {\n\talgorithm hmac-sha256;\n\tsecret "%s";\n};\n' "$secret" \
        >"$DIR/rndc.key"
    chmod 0600 "$DIR/rndc.key"

    # The signing zone as a fresh signing zone looks: SOA, NS, nothing else.
    zone_head "$SIGNING_ZONE" >"$DIR/primary/$SIGNING_ZONE.db"

    cat >"$DIR/primary/root.db" <<EOF
\$TTL 60
@	IN	SOA	ns.root-sandbox. hostmaster.root-sandbox. 1 3600 600 864000 60
@	IN	NS	ns.root-sandbox.
ns.root-sandbox.	IN	A	127.0.0.1
EOF

    # The production zone: every kind of _acme-challenge delegation the tests need.
    {
        zone_head "$PRODUCTION_ZONE"
        cat <<EOF
; CAA (RFC 8659) that restricts no CA: it only ends fleetcert's CAA walk at the apex, so no
; CAA question climbs to test. or the root
@	IN	CAA	0 iodef "mailto:hostmaster@$PRODUCTION_ZONE"
; per-name mapping: _acme-challenge.<id> -> <id>.$SIGNING_ZONE.
\$GENERATE 1-250 host\$ A 127.0.0.1
\$GENERATE 1-250 _acme-challenge.host\$ CNAME host\$.$PRODUCTION_ZONE.$SIGNING_ZONE.
\$GENERATE 1-250 www\$ A 127.0.0.1
\$GENERATE 1-250 _acme-challenge.www\$ CNAME www\$.$PRODUCTION_ZONE.$SIGNING_ZONE.
; shared mapping: every record at the apex of the signing zone
\$GENERATE 1-20 shared\$ A 127.0.0.1
\$GENERATE 1-20 _acme-challenge.shared\$ CNAME $SIGNING_ZONE.
; a name without any _acme-challenge delegation
nocname	IN	A	127.0.0.1
; a delegation pointing somewhere else
wrong	IN	A	127.0.0.1
_acme-challenge.wrong	IN	CNAME	elsewhere.invalid.
EOF
    } >"$DIR/primary/$PRODUCTION_ZONE.db"
    write_caa_names
}

# Names whose own CAA set restricts the CAs (tests/integration/fallback.rs names the
# sandbox's CAs `primary.test` and `fallback.test` with `caa_identity`): caa1 allows only
# the primary, caa2 neither, caa3 is an alias whose target's set allows only the fallback.
write_caa_names() {
    cat >>"$DIR/primary/$PRODUCTION_ZONE.db" <<EOF
\$GENERATE 1-2 caa\$ A 127.0.0.1
\$GENERATE 1-3 _acme-challenge.caa\$ CNAME caa\$.$PRODUCTION_ZONE.$SIGNING_ZONE.
caa1	IN	CAA	0 issue "primary.test"
caa2	IN	CAA	0 issue "nobody.test"
caa3	IN	CNAME	caa-target
caa-target	IN	A	127.0.0.1
caa-target	IN	CAA	0 issue "fallback.test"
EOF
}

fail_static() {
    printf 'sandbox: %s; see %s:\n' "$1" "$DIR/logs/openssl.log" >&2
    sed 's/^/    /' "$DIR/logs/openssl.log" >&2 || true
    exit 1
}

# The ports of the servers, NAME_PORT=N a line (in ports.env and in sandbox.env).
port_lines() {
    local name
    for name in PRIMARY_PORT RNDC_PORT SECONDARY_PORT RESOLVER_PORT ACME_PORT PEBBLE_MGMT_PORT; do
        printf '%s=%s\n' "$name" "${!name}"
    done
}

# primary_zone ZONE [MORE]: the primary's zone statement for ZONE (DIR/primary/ZONE.db),
# NOTIFYing the secondary and letting it transfer; MORE (lines) inside.
primary_zone() {
    printf 'zone "%s" {\n\ttype primary;\n\tfile "%s";\n\tnotify explicit;\n' "$1" "$DIR/primary/$1.db"
    printf '\talso-notify { 127.0.0.1 port %s; };\n\tallow-transfer { 127.0.0.1; };\n%s};\n' \
        "$SECONDARY_PORT" "${2:-}"
}

# secondary_zone ZONE: the secondary's zone statement for ZONE, transferred from the
# primary into DIR/secondary/ZONE.db (as text, for a look after a failure).
secondary_zone() {
    printf 'zone "%s" {\n\ttype secondary;\n\tprimaries { 127.0.0.1 port %s; };\n' "$1" "$PRIMARY_PORT"
    printf '\tfile "%s";\n\tmasterfile-format text;\n\tallow-notify { 127.0.0.1; };\n};\n' \
        "$DIR/secondary/$1.db"
}

write_port_files() {
    {
        port_lines
        printf 'FALLBACK_PORT=%s\nFALLBACK_MGMT_PORT=%s\n' "${FALLBACK_PORT:-}" \
            "${FALLBACK_MGMT_PORT:-}"
    } >"$DIR/ports.env"

    # Options both BIND servers share. reuseport no: BIND still shares a UDP port with a
    # second named (SO_REUSEADDR), but its TCP listener then fails with "address in use",
    # which is how a port collision is detected. notify-delay 0: NOTIFY goes out at once
    # instead of after the default 5 s. The *-rate options: at their default of 20/s BIND
    # sends NOTIFYs and SOA queries in batches every 500 ms, so the second zone of the
    # secondary waited half a second for its first transfer. The refresh/retry clamps make a secondary that
    # missed a NOTIFY (it was stopped) catch up within seconds on its own.
    local common
    common=$(
        cat <<EOF
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	pid-file none;
	lock-file none;
	reuseport no;
	notify-delay 0;
	notify-rate 1000;
	startup-notify-rate 1000;
	serial-query-rate 1000;
	min-refresh-time 1;
	max-refresh-time 30;
	min-retry-time 1;
	max-retry-time 2;
EOF
    )

    # --tsig (opt-in, off by default): TSIG keys for RFC 2136 UPDATE of the signing zone, for
    # `fleetcert publish` and `renew` with `update:` and for lego's rfc2136 provider
    # (tests/bench/). A key without @ is a fleet key: `grant KEY zonesub TXT;` (any TXT record
    # in the zone, nothing else). KEY@RECORD,... is a host key: `grant KEY name RECORD. TXT;`
    # for each record name, as docs/dynamic-update.md tells a server on its own to set up;
    # KEY@ alone is a key the server knows and lets change nothing. The algorithm defaults to
    # hmac-sha256. Any key makes the signing zone dynamic: BIND keeps its changes in a
    # journal and refuses `rndc reload` of it, so such a sandbox is not one for the file
    # publisher (its tests start sandboxes without --tsig). The secondary still gets every
    # change by NOTIFY and IXFR.
    local tsig_keys="" tsig_policy="" name record
    for name in "${!TSIG[@]}"; do
        tsig_keys+=$'key "'"$name"$'" {\n\talgorithm '"${TSIG_ALGORITHM[$name]}"$';\n\tsecret "'"${TSIG[$name]}"$'";\n};\n'
        if [[ -z ${TSIG_RECORDS[$name]+set} ]]; then
            tsig_policy+=$'\t\tgrant "'"$name"$'" zonesub TXT;\n'
        else
            for record in ${TSIG_RECORDS[$name]//,/ }; do
                tsig_policy+=$'\t\tgrant "'"$name"$'" name '"${record%.}"$'. TXT;\n'
            done
        fi
    done
    [[ -z $tsig_policy ]] || tsig_policy=$'\tupdate-policy {\n'"$tsig_policy"$'\t};\n'

    cat >"$DIR/primary/named.conf" <<EOF
include "$DIR/rndc.key";
${tsig_keys}controls {
	inet 127.0.0.1 port $RNDC_PORT allow { 127.0.0.1; } keys { "sandbox-rndc"; };
};
options {
	directory "$DIR/primary";
	managed-keys-directory "$DIR/primary";
	session-keyfile "$DIR/primary/session.key";
	listen-on port $PRIMARY_PORT { 127.0.0.1; };
$common
};
$(primary_zone "$PRODUCTION_ZONE")
// An empty root zone for Unbound's root stub: NXDOMAIN for everything outside the test
// zones, so nothing ever leaves the machine.
zone "." {
	type primary;
	file "$DIR/primary/root.db";
	notify no;
};
$(primary_zone "$SIGNING_ZONE" "${tsig_policy}$(dnssec_zone_options)")
$(dnssec_policy_statement)
EOF

    # The secondary has no control channel: it is stopped by signal. `controls { };` also
    # stops named from trying the default 127.0.0.1#953 with /etc/bind/rndc.key.
    cat >"$DIR/secondary/named.conf" <<EOF
controls { };
options {
	directory "$DIR/secondary";
	managed-keys-directory "$DIR/secondary";
	session-keyfile "$DIR/secondary/session.key";
	listen-on port $SECONDARY_PORT { 127.0.0.1; };
	notify no;
$common
};
$(secondary_zone "$PRODUCTION_ZONE")
$(secondary_zone "$SIGNING_ZONE")
EOF

    cat >"$DIR/rndc.conf" <<EOF
include "$DIR/rndc.key";
options {
	default-key "sandbox-rndc";
	default-server 127.0.0.1;
	default-port $RNDC_PORT;
};
EOF
    cat >"$DIR/rndc" <<EOF
#!/bin/sh
# rndc for the primary of the sandbox in $DIR
exec $(command -v rndc) -c "$DIR/rndc.conf" -s 127.0.0.1 -p $RNDC_PORT "\$@"
EOF
    chmod 0755 "$DIR/rndc"

    # Unbound as the CA's resolver. cache-max-ttl 0 / cache-max-negative-ttl 0: every
    # answer expires at once, so a TXT changed on the servers is seen by the next query.
    # The root is a stub to the primary's empty root zone: every name outside the test
    # zones, including CNAME targets such as elsewhere.invalid., gets NXDOMAIN without
    # Unbound ever asking the real root servers (hermetic, no timeouts without network).
    # test. is one of Unbound's built-in blocked zones, hence nodefault.
    cat >"$DIR/unbound/unbound.conf" <<EOF
server:
	interface: 127.0.0.1
	port: $RESOLVER_PORT
	do-ip4: yes
	do-ip6: no
	do-udp: yes
	do-tcp: yes
	so-reuseport: no
	num-threads: 1
	username: ""
	chroot: ""
	directory: "$DIR/unbound"
	pidfile: ""
	logfile: ""
	use-syslog: no
	verbosity: 1
	access-control: 127.0.0.0/8 allow
	module-config: "$(dnssec_unbound_modules)"
$(dnssec_unbound_options)
	do-not-query-localhost: no
	qname-minimisation: no
	cache-max-ttl: 0
	cache-max-negative-ttl: 0
	msg-cache-size: 1m
	rrset-cache-size: 1m
	key-cache-size: 1m
	neg-cache-size: 1m
	outgoing-range: 64
	num-queries-per-thread: 32
	local-zone: "test." nodefault
remote-control:
	control-enable: no
stub-zone:
	name: "."
	stub-addr: 127.0.0.1@$PRIMARY_PORT
stub-zone:
	name: "$PRODUCTION_ZONE."
	stub-addr: 127.0.0.1@$PRIMARY_PORT
	stub-addr: 127.0.0.1@$SECONDARY_PORT
stub-zone:
	name: "$SIGNING_ZONE."
	stub-addr: 127.0.0.1@$PRIMARY_PORT
	stub-addr: 127.0.0.1@$SECONDARY_PORT
EOF

    local eab="" kid sep=""
    if ((${#EAB[@]} > 0)); then
        eab=$',\n    "externalAccountBindingRequired": true,\n    "externalAccountMACKeys": {'
        for kid in "${!EAB[@]}"; do
            eab+="$sep"$'\n      '"\"$kid\": \"${EAB[$kid]}\""
            sep=,
        done
        eab+=$'\n    }'
    else
        eab=$',\n    "externalAccountBindingRequired": false'
    fi
    # Keys as in /usr/share/doc/pebble/examples/pebble-config.json (Pebble 2.4). httpPort
    # and tlsPort are where Pebble would connect for HTTP-01/TLS-ALPN-01, unused here.
    cat >"$DIR/pebble.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$ACME_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
    "certificate": "$DIR/pebble-cert.pem",
    "privateKey": "$DIR/pebble-key.pem",
    "httpPort": 5002,
    "tlsPort": 5001,
    "ocspResponderURL": ""$eab
  }
}
EOF
}

write_env_file() {
    local tmp=$DIR/sandbox.env.tmp
    cat >"$tmp" <<EOF
SANDBOX_DIR=$DIR
SANDBOX_SCRIPT=$SELF
ACME_DIRECTORY=https://127.0.0.1:$ACME_PORT/dir
CA_BUNDLE=$DIR/ca.pem
PEBBLE_MGMT=https://127.0.0.1:$PEBBLE_MGMT_PORT
PEBBLE_ROOT=$DIR/pebble-root.pem
PEBBLE_INTERMEDIATE=$DIR/pebble-intermediate.pem
RESOLVER=127.0.0.1:$RESOLVER_PORT
PRIMARY=127.0.0.1:$PRIMARY_PORT
SECONDARY=127.0.0.1:$SECONDARY_PORT
PRODUCTION_ZONE=$PRODUCTION_ZONE
SIGNING_ZONE=$SIGNING_ZONE
SIGNING_ZONE_NS=ns1.$SIGNING_ZONE.,ns2.$SIGNING_ZONE.
SIGNING_ZONE_FILE=$DIR/primary/$SIGNING_ZONE.db
PRODUCTION_ZONE_FILE=$DIR/primary/$PRODUCTION_ZONE.db
RNDC=$DIR/rndc
RNDC_CONF=$DIR/rndc.conf
LOG_DIR=$DIR/logs
EOF
    port_lines >>"$tmp"
    dnssec_env_lines >>"$tmp"
    write_fallback_env >>"$tmp"
    mv "$tmp" "$DIR/sandbox.env"
}

# --- the fallback CA (--fallback-ca, opt-in) ----------------------------------------------
# A second Pebble with its own ports, its own database and its own roots, that registers
# accounts only with external account binding (the key id and HMAC key given): the second
# CA of fleetcert's `fallback:`. It uses the same resolver and HTTPS certificate as the first.

fallback_enabled() {
    [[ -n ${FALLBACK_PORT:-} ]]
}

write_fallback_config() {
    fallback_enabled || return 0
    mkdir -p "$DIR/fallback"
    cat >"$DIR/fallback/pebble.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$FALLBACK_PORT",
    "managementListenAddress": "127.0.0.1:$FALLBACK_MGMT_PORT",
    "certificate": "$DIR/pebble-cert.pem",
    "privateKey": "$DIR/pebble-key.pem",
    "httpPort": 5002,
    "tlsPort": 5001,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": true,
    "externalAccountMACKeys": {"$FALLBACK_KID": "$FALLBACK_HMAC"}
  }
}
EOF
    printf 'FALLBACK_KID=%s
FALLBACK_HMAC=%s
' "$FALLBACK_KID" "$FALLBACK_HMAC"         >"$DIR/fallback/eab.env"
}

write_fallback_env() {
    fallback_enabled || return 0
    cat <<EOF
FALLBACK_DIRECTORY=https://127.0.0.1:$FALLBACK_PORT/dir
FALLBACK_ROOT=$DIR/fallback-root.pem
FALLBACK_INTERMEDIATE=$DIR/fallback-intermediate.pem
FALLBACK_MGMT=https://127.0.0.1:$FALLBACK_MGMT_PORT
FALLBACK_EAB_KID=$FALLBACK_KID
FALLBACK_EAB_HMAC=$FALLBACK_HMAC
EOF
}

# --- servers -----------------------------------------------------------------------------

describe() {
    case $1 in
    primary) printf 'BIND primary (named on 127.0.0.1:%s)' "$PRIMARY_PORT" ;;
    secondary) printf 'BIND secondary (named on 127.0.0.1:%s)' "$SECONDARY_PORT" ;;
    unbound) printf 'Unbound resolver (127.0.0.1:%s)' "$RESOLVER_PORT" ;;
    pebble) printf 'Pebble (ACME 127.0.0.1:%s, management 127.0.0.1:%s)' "$ACME_PORT" "$PEBBLE_MGMT_PORT" ;;
    fallback) printf 'fallback Pebble (ACME 127.0.0.1:%s, management 127.0.0.1:%s)' "$FALLBACK_PORT" "$FALLBACK_MGMT_PORT" ;;
    *) printf '%s' "$1" ;;
    esac
}

launch() {
    local name=$1 log=$DIR/logs/$1.log cmd
    case $name in
    primary | secondary) cmd=(named -g -n 1 -c "$DIR/$name/named.conf") ;;
    unbound) cmd=(unbound -d -p -c "$DIR/unbound/unbound.conf") ;;
    pebble | fallback)
        local envs=(PEBBLE_VA_NOSLEEP=1) line config=$DIR/pebble.json
        [[ $name == pebble ]] || config=$DIR/fallback/pebble.json
        while IFS= read -r line; do
            [[ -n $line ]] && envs+=("$line")
        done <"$DIR/pebble.env"
        cmd=(env "${envs[@]}" pebble -config "$config"
            -dnsserver "127.0.0.1:$RESOLVER_PORT")
        ;;
    *) die "unknown server '$name' (one of: ${SERVERS[*]})" ;;
    esac
    spawn "$name" "$log" "${cmd[@]}"
}

# Serials of the given zones, one per line, if the server on PORT answers for every one
# of them authoritatively (AA, NOERROR). One dig for all zones; parsed without awk,
# because the wait loops call this many times while the machine is busy starting servers.
soa_serials() {
    local port=$1 out line ok='' zone query=()
    shift
    local -A serial=()
    for zone in "$@"; do
        query+=("$zone" SOA)
    done
    out=$(dig +norec +time=1 +tries=1 -p "$port" @127.0.0.1 "${query[@]}" 2>/dev/null) || return 1
    local fields
    while IFS= read -r line; do
        case $line in
        *"->>HEADER<<-"*) [[ $line == *"status: NOERROR"* ]] && ok=1 || ok='' ;;
        ";; flags: qr aa"*) ;;
        ";; flags:"*) ok='' ;;
        ";"* | "") ;;
        *)
            read -ra fields <<<"$line"
            [[ -n $ok && ${fields[3]:-} == SOA ]] && serial[${fields[0]}]=${fields[6]}
            ;;
        esac
    done <<<"$out"
    for zone in "$@"; do
        [[ -n ${serial[$zone.]:-} ]] || return 1
        printf '%s\n' "${serial[$zone.]}"
    done
}

# One readiness probe; 0 when NAME is fully up.
probe() {
    case $1 in
    primary)
        soa_serials "$PRIMARY_PORT" "$SIGNING_ZONE" "$PRODUCTION_ZONE" >/dev/null
        ;;
    secondary)
        # Up means transferred: the same serials as the primary (when it is running).
        local s p
        s=$(soa_serials "$SECONDARY_PORT" "$SIGNING_ZONE" "$PRODUCTION_ZONE") || return 1
        running primary || return 0
        p=$(soa_serials "$PRIMARY_PORT" "$SIGNING_ZONE" "$PRODUCTION_ZONE") || return 1
        [[ $s == "$p" ]]
        ;;
    unbound)
        # localhost. is answered from Unbound's own data: tests Unbound alone.
        local out
        out=$(dig +time=1 +tries=1 -p "$RESOLVER_PORT" @127.0.0.1 localhost A 2>/dev/null) || return 1
        [[ $out == *"status: NOERROR"* ]]
        ;;
    pebble)
        curl -sf --max-time 2 --cacert "$DIR/ca.pem" -o /dev/null \
            "https://127.0.0.1:$ACME_PORT/dir" 2>/dev/null
        ;;
    fallback)
        curl -sf --max-time 2 --cacert "$DIR/ca.pem" -o /dev/null \
            "https://127.0.0.1:$FALLBACK_PORT/dir" 2>/dev/null
        ;;
    *) return 1 ;;
    esac
}

# Print the one-line diagnosis and the tail of the log of a server that failed.
report_failure() {
    local name=$1 reason=$2
    printf 'sandbox: %s %s; last lines of %s:\n' "$(describe "$name")" "$reason" \
        "$DIR/logs/$name.log" >&2
    grep -v -e 'built with' -e 'automatic empty zone' "$DIR/logs/$name.log" 2>/dev/null |
        tail -n 15 | sed 's/^/    /' >&2 || true
}

# One look at NAME during start-up, for `await`: 0 once it answers, 2 (COLLIDED=NAME) when
# it could not bind its port, 3 when it failed (reported), 1 while it is not up yet.
ready() {
    local name=$1 events
    # Named does not exit when it cannot bind a port: it logs it and runs on, and even
    # shares the UDP port with the other named, which then answers our probes. So named
    # counts as up only after its log says "running" (by then any bind error is logged) and
    # has no bind error. Unbound and Pebble exit instead.
    events=$(grep -o -i -E 'address (already )?in use|not loaded due to errors| running$' \
        "$DIR/logs/$name.log" 2>/dev/null || true)
    case ${events,,} in
    *"in use"*)
        COLLIDED=$name
        return 2
        ;;
    *"not loaded"*)
        report_failure "$name" "could not load a zone"
        return 3
        ;;
    *) ;;
    esac
    [[ ($name != primary && $name != secondary) || $events == *" running"* ]] || return 1
    probe "$name" && return 0
    # A restarted secondary serves its old copy and checks the primary on its own within a
    # second or two; a NOTIFY from the primary makes it check at once.
    if [[ $name == secondary && -z ${KICKED:-} ]] &&
        soa_serials "$SECONDARY_PORT" "$SIGNING_ZONE" >/dev/null && probe primary; then
        KICKED=1
        "$DIR/rndc" notify "$SIGNING_ZONE" >/dev/null 2>&1 || true
        "$DIR/rndc" notify "$PRODUCTION_ZONE" >/dev/null 2>&1 || true
    fi
    return 1
}

# Wait until every named server is up, one after the other (they start in parallel).
# Returns 0 when all are, 2 on a port collision (the caller may retry with other ports), 1
# on any other failure (already reported).
wait_ready() {
    local name rc
    KICKED=
    for name in "$@"; do
        rc=0
        await "$name" answer ready "$name" || rc=$?
        ((rc == 0)) || return "$rc"
        step "$name answers"
    done
}

# Pebble makes a new root and intermediate on every launch: fetch them after each start
# (NAME: pebble, or fallback for the second Pebble's, into fallback-root.pem and so on).
fetch_pebble_roots() {
    local name=${1:-pebble} kind file port=$PEBBLE_MGMT_PORT
    [[ $name == pebble ]] || port=$FALLBACK_MGMT_PORT
    for kind in roots intermediates; do
        [[ $kind == roots ]] && file=$name-root.pem || file=$name-intermediate.pem
        if ! curl -sf --max-time 5 --cacert "$DIR/ca.pem" -o "$DIR/$file.tmp" \
            "https://127.0.0.1:$port/$kind/0"; then
            report_failure "$name" "did not serve /$kind/0 on its management port"
            return 1
        fi
        mv "$DIR/$file.tmp" "$DIR/$file"
    done
}

# End to end: Unbound reaches both zones through its stub zones.
check_resolution() {
    local out
    out=$(dig +time=2 +tries=2 -p "$RESOLVER_PORT" @127.0.0.1 \
        "_acme-challenge.host1.$PRODUCTION_ZONE" CNAME 2>/dev/null) || true
    if [[ $out != *"status: NOERROR"* || $out != *"host1.$PRODUCTION_ZONE.$SIGNING_ZONE."* ]]; then
        report_failure unbound "cannot resolve _acme-challenge.host1.$PRODUCTION_ZONE through its stub zones"
        return 1
    fi
}


# --- DNSSEC (opt-in: --dnssec) -----------------------------------------------------------
#
# --dnssec signs the signing zone on the primary with a dnssec-policy (one ECDSA P-256 CSK,
# made by BIND at load): inline signing when the zone is static (the file publisher's zone
# file stays the unsigned source, BIND signs on each reload), BIND's own signing when --tsig
# makes it dynamic (UPDATEs go in unsigned). The secondary transfers the signed zone. Unbound
# validates with that key as its trust anchor, so Pebble, which resolves through it, fails a
# bogus chain as a CA would. --no-validation keeps the zone signed but makes Unbound a plain
# iterator (a resolver that does not validate). The production zone stays unsigned: with no
# trust anchor above it, its names are insecure, its _acme-challenge CNAMEs lead into a
# secure zone, the common shape. `trust-anchor DIR wrong` gives Unbound another key as
# anchor (a key rollover the resolvers never heard of), `right` puts the real one back.

dnssec_zone_options() {
    [[ -n ${DNSSEC:-} ]] || return 0
    mkdir -p "$DIR/primary/keys"
    printf '\tdnssec-policy "sandbox";\n\tkey-directory "%s";\n' "$DIR/primary/keys"
    # A zone without update-policy is static: BIND signs it only with inline signing.
    ((${#TSIG[@]} > 0)) || printf '\tinline-signing yes;\n'
}

dnssec_policy_statement() {
    [[ -n ${DNSSEC:-} ]] || return 0
    printf 'dnssec-policy "sandbox" {\n\tkeys { csk lifetime unlimited algorithm ecdsap256sha256; };\n};\n'
}

dnssec_unbound_modules() {
    if [[ -n ${DNSSEC:-} && ${DNSSEC_VALIDATION:-yes} == yes ]]; then
        printf 'validator iterator'
    else
        printf 'iterator'
    fi
}

# ede: extended DNS errors (RFC 8914) in SERVFAIL answers, which fleetcert shows; a bogus
# answer is not cached (val-bogus-ttl), so a fixed chain is seen by the next question.
dnssec_unbound_options() {
    [[ -n ${DNSSEC:-} && ${DNSSEC_VALIDATION:-yes} == yes ]] || return 0
    printf '\ttrust-anchor-file: "%s"\n\tede: yes\n\tval-log-level: 2\n\tval-bogus-ttl: 0\n' \
        "$DIR/unbound/trust-anchor.key"
}

dnssec_env_lines() {
    if [[ -n ${DNSSEC:-} ]]; then
        printf 'SIGNED=yes\nVALIDATING=%s\nTRUST_ANCHOR=%s\n' "$DNSSEC_VALIDATION" \
            "$DIR/unbound/trust-anchor.key"
    else
        printf 'SIGNED=no\nVALIDATING=no\n'
    fi
}

# The primary's DNSKEY and SOA answers of the signing zone with their RRSIGs: 0 once BIND made
# its key and signed the zone (it does both in the background after loading).
dnssec_signed() {
    local out
    out=$(dig +norec +dnssec +time=1 +tries=1 -p "$PRIMARY_PORT" @127.0.0.1 \
        "$SIGNING_ZONE" DNSKEY "$SIGNING_ZONE" SOA 2>/dev/null) || return 1
    [[ $out == *$'\tDNSKEY\t257 '* && $out == *$'\tRRSIG\tDNSKEY '* &&
        $out == *$'\tRRSIG\tSOA '* ]]
}

# Waits for the signed zone, then writes its key as Unbound's trust anchor.
dnssec_wait_signed() {
    local deadline nap=20
    now_ms
    deadline=$((NOW_MS + TIMEOUT * 1000))
    until dnssec_signed; do
        now_ms
        if ((NOW_MS > deadline)); then
            report_failure primary "did not sign $SIGNING_ZONE within ${TIMEOUT}s"
            return 1
        fi
        sleep "0.$(printf '%03d' "$nap")"
        ((nap = nap * 2 > 100 ? 100 : nap * 2))
    done
    dig +norec +noall +answer +time=2 -p "$PRIMARY_PORT" @127.0.0.1 "$SIGNING_ZONE" DNSKEY |
        grep -E $'\tDNSKEY\t257 ' >"$DIR/unbound/$SIGNING_ZONE.right.key"
    [[ -s $DIR/unbound/$SIGNING_ZONE.right.key ]] || {
        report_failure primary "serves no key-signing DNSKEY for $SIGNING_ZONE"
        return 1
    }
    cp "$DIR/unbound/$SIGNING_ZONE.right.key" "$DIR/unbound/trust-anchor.key"
}

cmd_trust_anchor() {
    local which=${1:-} anchor
    [[ $which == right || $which == wrong ]] || die "trust-anchor wants right or wrong, got '$which'"
    lock_dir
    load_ports
    anchor=$DIR/unbound/$SIGNING_ZONE.$which.key
    [[ -s $DIR/unbound/$SIGNING_ZONE.right.key ]] || die "$DIR was not started with --dnssec"
    if [[ ! -s $anchor ]]; then
        # A key of the same algorithm that never signed anything.
        local base
        base=$(dnssec-keygen -q -a ECDSAP256SHA256 -f KSK -K "$DIR/unbound" "$SIGNING_ZONE") ||
            die "dnssec-keygen failed"
        grep -E 'DNSKEY' "$DIR/unbound/$base.key" >"$anchor"
    fi
    cp "$anchor" "$DIR/unbound/trust-anchor.key"
    kill_servers unbound
    launch unbound
    wait_ready unbound || exit 1
}

cmd_start() {
    local parent=
    DNSSEC='' DNSSEC_VALIDATION=yes
    declare -gA EAB=() TSIG=() TSIG_ALGORITHM=() TSIG_RECORDS=()
    local pebble_env=() fallback_ca=
    set_dir "${1:-}" create
    shift
    while (($# > 0)); do
        case $1 in
        --pebble-env)
            [[ ${2:-} =~ ^[A-Za-z_][A-Za-z0-9_]*=[^[:space:]]*$ ]] ||
                die "--pebble-env wants KEY=VALUE without spaces, got '${2:-}'"
            pebble_env+=("$2")
            shift 2
            ;;
        --pebble-eab)
            [[ ${2:-} =~ ^([A-Za-z0-9_-]+)=([A-Za-z0-9_-]+)$ ]] ||
                die "--pebble-eab wants KID=BASE64URL-HMAC-KEY, got '${2:-}'"
            EAB[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
            shift 2
            ;;
        --tsig)
            [[ ${2:-} =~ ^((hmac-sha(256|384|512)):)?([A-Za-z0-9_-]+)=([A-Za-z0-9+/]+=*)(@([A-Za-z0-9._,-]*))?$ ]] ||
                die "--tsig wants [hmac-sha256|hmac-sha384|hmac-sha512:]NAME=BASE64-SECRET[@RECORD,...], got '${2:-}'"
            TSIG[${BASH_REMATCH[4]}]=${BASH_REMATCH[5]}
            TSIG_ALGORITHM[${BASH_REMATCH[4]}]=${BASH_REMATCH[2]:-hmac-sha256}
            [[ -z ${BASH_REMATCH[6]} ]] || TSIG_RECORDS[${BASH_REMATCH[4]}]=${BASH_REMATCH[7]}
            shift 2
            ;;
        --fallback-ca)
            [[ ${2:-} =~ ^([A-Za-z0-9_-]+)=([A-Za-z0-9_-]+)$ ]] ||
                die "--fallback-ca wants KID=BASE64URL-HMAC-KEY, got '${2:-}'"
            fallback_ca=1 FALLBACK_KID=${BASH_REMATCH[1]} FALLBACK_HMAC=${BASH_REMATCH[2]}
            shift 2
            ;;
        --parent)
            [[ ${2:-} =~ ^[0-9]+$ ]] || die "--parent wants a process id, got '${2:-}'"
            parent=$2
            shift 2
            ;;
        --dnssec)
            DNSSEC=signed
            shift
            ;;
        --no-validation)
            DNSSEC_VALIDATION=no
            shift
            ;;
        *) die "unknown option '$1' for start" ;;
        esac
    done
    [[ -z $(ls -A "$DIR") ]] || die "$DIR is not empty: start wants a fresh directory"
    [[ -n $DNSSEC || $DNSSEC_VALIDATION == yes ]] || die "--no-validation goes with --dnssec"
    lock_dir
    local cmd
    for cmd in named unbound pebble rndc dig curl openssl flock setsid; do
        command -v "$cmd" >/dev/null ||
            die "$cmd not found: run tests/sandbox/install.sh (as root) first"
    done

    now_ms
    T0=$NOW_MS
    echo starting >"$DIR/state"
    write_static_files
    step "certificates and zone files written"
    printf '%s\n' "${pebble_env[@]}" >"$DIR/pebble.env"
    [[ -z $parent ]] || start_watchdog "$parent"

    local attempt rc
    for ((attempt = 1; ; attempt++)); do
        reserve_ports 6
        PRIMARY_PORT=${RESERVED[0]} RNDC_PORT=${RESERVED[1]} SECONDARY_PORT=${RESERVED[2]}
        RESOLVER_PORT=${RESERVED[3]} ACME_PORT=${RESERVED[4]} PEBBLE_MGMT_PORT=${RESERVED[5]}
        start_fallback_ports "$fallback_ca"
        write_port_files
        write_fallback_config
        # The secondary starts once the primary answers: started together, its first
        # refresh can go out before the primary listens and then waits for a retry.
        launch primary
        # Signed: Unbound's trust anchor is the key the primary makes, so it starts later.
        [[ -n $DNSSEC ]] || launch unbound
        launch pebble
        ! fallback_enabled || launch fallback
        rc=0
        COLLIDED=
        wait_ready primary || rc=$?
        step "primary ready"
        if ((rc == 0)) && [[ -n $DNSSEC ]]; then
            dnssec_wait_signed || rc=1
            ((rc != 0)) || launch unbound
            step "signing zone signed"
        fi
        if ((rc == 0)); then
            launch secondary
            # shellcheck disable=SC2046 # one word or none
            wait_ready secondary unbound pebble $(fallback_enabled && echo fallback) || rc=$?
            step "secondary, unbound, pebble ready"
        fi
        if ((rc == 0)); then
            fetch_pebble_roots && fetch_fallback_roots && check_resolution || rc=1
            step "roots fetched, resolution checked"
        fi
        ((rc == 0)) && break
        kill_servers "${SERVERS[@]}"
        # shellcheck disable=SC2046 # one port per line, digits only
        release_ports $(all_ports)
        if ((rc == 2 && attempt < START_ATTEMPTS)); then
            # Another process took one of our ports between the check and the bind.
            printf 'sandbox: %s hit a port in use, retrying with new ports\n' \
                "$(describe "$COLLIDED")" >>"$DIR/logs/start.log"
            continue
        fi
        if ((rc == 2)); then
            report_failure "$COLLIDED" "could not bind its ports after $attempt attempts"
        fi
        stop_watchdog
        echo stopped >"$DIR/state"
        exit 1
    done
    write_env_file
    echo running >"$DIR/state"
    now_ms
    printf 'started in %s ms (attempt %s)\n' "$((NOW_MS - T0))" "$attempt" >>"$DIR/logs/start.log"
}

# The fallback CA's two ports, reserved after the others' when --fallback-ca asks for it.
start_fallback_ports() {
    FALLBACK_PORT='' FALLBACK_MGMT_PORT=''
    [[ -n ${1:-} ]] || return 0
    reserve_ports 2
    FALLBACK_PORT=${RESERVED[0]} FALLBACK_MGMT_PORT=${RESERVED[1]}
}

fetch_fallback_roots() {
    ! fallback_enabled || fetch_pebble_roots fallback
}

cmd_stop() {
    # Nothing there, or not a sandbox: nothing to stop.
    [[ -e $DIR/state ]] || return 0
    lock_dir
    kill_servers "${SERVERS[@]}"
    stop_watchdog
    if [[ -r $DIR/ports.env ]]; then
        load_ports
        # shellcheck disable=SC2046 # one port per line, digits only
        release_ports $(all_ports)
    fi
    [[ ! -e $DIR/state ]] || echo stopped >"$DIR/state"
}

check_server_name() {
    [[ " ${SERVERS[*]} " == *" ${1:-} "* ]] || die "unknown server '${1:-}' (one of: ${SERVERS[*]})"
}

cmd_stop_server() {
    check_server_name "$1"
    lock_dir
    load_ports
    kill_servers "$1"
}

cmd_start_server() {
    local name=$1 rc=0
    check_server_name "$name"
    lock_dir
    load_ports
    running "$name" && return 0
    launch "$name"
    wait_ready "$name" || rc=$?
    if ((rc == 2)); then
        report_failure "$name" "cannot bind its port again (another process took it)"
    fi
    if ((rc == 0)) && [[ $name == pebble || $name == fallback ]]; then
        fetch_pebble_roots "$name" || rc=1
    fi
    if ((rc != 0)); then
        kill_servers "$name"
        exit 1
    fi
}

cmd_status() {
    local name
    load_ports
    for name in "${SERVERS[@]}" watchdog; do
        if [[ $name == watchdog ]]; then
            [[ -e $DIR/pids/watchdog.pid ]] || continue
            proc_ours "$(cat "$DIR/pids/watchdog.pid")" && echo "watchdog running" || echo "watchdog stopped"
        else
            server_status "$name"
        fi
    done
}

dispatch "$@"
