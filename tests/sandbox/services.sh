#!/usr/bin/env bash
# The services a certificate ends up in, each on 127.0.0.1 in a directory of its own:
#
#   services.sh start DIR nginx --cert FULLCHAIN --key KEY --name SNI [--parent PID]
#   services.sh start DIR zookeeper --keystore P12 --password-file FILE [--parent PID]
#   services.sh start DIR node-exporter --textfile-dir DIR [--parent PID]
#   services.sh reload DIR      (nginx: nginx -t, nginx -s reload, wait for the new workers)
#   services.sh restart DIR     (stop, start again on the same port, wait until it answers)
#   services.sh stop-server DIR (stop the server, keep its port for `restart`)
#   services.sh stop DIR        (stop everything, free the port)
#   services.sh status DIR
#
# `start` writes the configuration into DIR (nothing of the system's: no /etc, no root
# port, no system pid or log file), starts the server from Debian's package, waits until it
# answers on its port and then writes DIR/service.env. Paths are used as given (a symlink
# stays a symlink, as a service would see it). See docs/dev/sandbox.md.
#
# Environment: SERVICES_TIMEOUT (seconds to wait for a server, default 180: a guard against a
# hang; `start.log` says every 10 s what it still waits for).
set -euo pipefail

PATH=$PATH:/usr/sbin:/sbin
SELF=$(readlink -f "${BASH_SOURCE[0]}")
PROG=services
COMMANDS=(reload restart stop-server status)
KINDS=(nginx zookeeper node-exporter)
TIMEOUT=${SERVICES_TIMEOUT:-180}
START_ATTEMPTS=5
# Debian's zookeeper.jar names its dependencies in its manifest's Class-Path, but not
# netty-codec, without which the Netty connection factory (the only one that speaks TLS)
# fails every connection with NoClassDefFoundError. slf4j-simple: ZooKeeper logs through
# slf4j, which without a binding prints nothing at all; this one logs to stderr.
ZK_CLASSPATH=/usr/share/java/zookeeper.jar:/usr/share/java/netty-codec.jar:/usr/share/java/slf4j-simple.jar
# A small heap, serial GC and the C1 compiler only: a test server on a 2-core machine
# shared with the build, where start-up time matters more than throughput.
ZK_JVM_OPTIONS=(-Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1)
# shellcheck source=tests/sandbox/lib.sh
source "${SELF%/*}/lib.sh"

usage() {
    sed -n '4,11s/^# \{0,1\}//p' "$SELF" >&2
    exit 2
}

# --- arguments ---------------------------------------------------------------------------

# An absolute path for a file or directory the service reads, without resolving symlinks.
# The path goes into configuration files unquoted (nginx, zoo.cfg), hence the character set.
absolute() {
    local path=$1 what=$2
    [[ $path == /* ]] || path=$PWD/$path
    [[ $path =~ ^[A-Za-z0-9_./+-]+$ ]] ||
        die "$what path '$path' must consist of letters, digits and _ . / + - only"
    printf '%s\n' "$path"
}

readable_file() {
    [[ -f $1 && -r $1 ]] || die "$2 $1 is not a readable file"
}

# --- configuration -----------------------------------------------------------------------

write_nginx_config() {
    mkdir -p "$DIR/nginx/tmp"
    # daemon off: the master stays our child, its pid is the one we record. pid: for
    # `nginx -s reload`. The temp paths: nginx creates them at start-up, by default under
    # /var/lib/nginx. -e on the command line keeps it from opening the compiled-in log.
    cat >"$DIR/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $DIR/nginx/nginx.pid;
error_log $DIR/logs/nginx.log notice;
events {
	worker_connections 64;
}
http {
	access_log $DIR/logs/nginx-access.log;
	client_body_temp_path $DIR/nginx/tmp/body;
	proxy_temp_path $DIR/nginx/tmp/proxy;
	fastcgi_temp_path $DIR/nginx/tmp/fastcgi;
	uwsgi_temp_path $DIR/nginx/tmp/uwsgi;
	scgi_temp_path $DIR/nginx/tmp/scgi;
	server {
		listen 127.0.0.1:$PORT ssl default_server;
		server_name $NAME;
		ssl_certificate $CERT;
		ssl_certificate_key $KEY;
		location / {
			default_type text/plain;
			return 200 "fleetcert test server $NAME\n";
		}
	}
}
EOF
}

write_zookeeper_config() {
    mkdir -p "$DIR/zookeeper/data" "$DIR/zookeeper/tmp"
    # Only the TLS client port: no clientPort (no plain port), no admin server (Jetty on
    # 8080), no JMX port. Unknown keys become system properties zookeeper.<key>, which is
    # how ZooKeeper reads the ssl.* settings. The keystore is read when the server starts
    # and never again: a new keystore needs a restart. ruok and srvr are the four-letter
    # words the readiness probe and a curious human may use over TLS.
    cat >"$DIR/zookeeper/zoo.cfg" <<EOF
tickTime=2000
dataDir=$DIR/zookeeper/data
secureClientPort=$PORT
secureClientPortAddress=127.0.0.1
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
ssl.keyStore.location=$KEYSTORE
ssl.keyStore.passwordPath=$PASSWORD_FILE
ssl.keyStore.type=PKCS12
ssl.clientAuth=none
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
EOF
}

write_node_exporter_config() {
    mkdir -p "$DIR/node-exporter"
    # An empty web configuration (no TLS, no auth). It is passed so that the process's
    # command line names DIR, which is how `stop` recognizes its own processes.
    : >"$DIR/node-exporter/web.yml"
}

write_config() {
    case $KIND in
    nginx) write_nginx_config ;;
    zookeeper) write_zookeeper_config ;;
    node-exporter) write_node_exporter_config ;;
    esac
    printf 'PORT=%s\n' "$PORT" >"$DIR/ports.env"
}

write_env_file() {
    local tmp=$DIR/service.env.tmp
    {
        printf '%s\n' "SERVICE=$KIND" "SERVICE_DIR=$DIR" "SERVICES_SCRIPT=$SELF" "PORT=$PORT" \
            "ADDRESS=127.0.0.1:$PORT" "LOG=$DIR/logs/$KIND.log" "STARTUP_MS=$STARTUP_MS" \
            "RESTART=$DIR/restart"
        case $KIND in
        nginx) printf '%s\n' "CONFIG=$DIR/nginx/nginx.conf" "NAME=$NAME" "RELOAD=$DIR/reload" ;;
        zookeeper) printf '%s\n' "CONFIG=$DIR/zookeeper/zoo.cfg" ;;
        node-exporter) printf '%s\n' "METRICS_URL=http://127.0.0.1:$PORT/metrics" ;;
        esac
    } >"$tmp"
    mv "$tmp" "$DIR/service.env"
}

# DIR/reload and DIR/restart: commands a fleetcert config or an Ansible handler can run.
write_wrappers() {
    local sub
    for sub in restart reload; do
        [[ $sub == reload && $KIND != nginx ]] && continue
        printf '#!/bin/sh\n# %s the %s in %s\nexec %s %s %s\n' "$sub" "$KIND" "$DIR" \
            "$SELF" "$sub" "$DIR" >"$DIR/$sub"
        chmod 0755 "$DIR/$sub"
    done
}

# --- the server --------------------------------------------------------------------------

describe() {
    printf '%s (127.0.0.1:%s)' "$KIND" "$PORT"
}

nginx_cmd() {
    NGINX=(nginx -p "$DIR/nginx/" -e "$DIR/logs/nginx.log" -c "$DIR/nginx/nginx.conf")
}

launch() {
    local log=$DIR/logs/$KIND.log cmd
    case $KIND in
    nginx)
        nginx_cmd
        cmd=("${NGINX[@]}")
        ;;
    zookeeper)
        cmd=(java "${ZK_JVM_OPTIONS[@]}" "-Djava.io.tmpdir=$DIR/zookeeper/tmp"
            -cp "$ZK_CLASSPATH" org.apache.zookeeper.server.ZooKeeperServerMain
            "$DIR/zookeeper/zoo.cfg")
        ;;
    node-exporter)
        cmd=(prometheus-node-exporter "--web.listen-address=127.0.0.1:$PORT"
            "--web.config.file=$DIR/node-exporter/web.yml" --web.disable-exporter-metrics
            --collector.disable-defaults --collector.textfile
            "--collector.textfile.directory=$TEXTFILE_DIR")
        ;;
    esac
    # A session of its own (setsid execs in place: the pid stays the server's), as a daemon
    # has: a `restart` run as a fleetcert `reload:` or an Ansible handler leaves it behind in
    # no process group that its caller kills when it is done. fleetcert kills what a command
    # leaves in its group; ansible-core's worker is a session leader (worker.py `_detach`),
    # and a worker still exiting when the playbook ends is sent SIGTERM at once
    # (WORKER_SHUTDOWN_POLL_COUNT is 0), which it passes to its whole group (`_term`:
    # os.killpg): a server restarted by the last handler of a run on a busy machine died
    # moments after it had answered.
    spawn "$KIND" "$log" setsid "${cmd[@]}"
}

# What the server logs once it has bound its port (nginx: once it has started its
# workers, which it does only after binding every listener).
listening_line() {
    case $KIND in
    nginx) printf 'start worker processes' ;;
    zookeeper) printf 'bound to port %s' "$PORT" ;;
    node-exporter) printf 'msg="Listening on" address=127.0.0.1:%s' "$PORT" ;;
    esac
}

# One readiness probe: 0 once the server answers as it will for the tests.
probe() {
    case $KIND in
    nginx)
        curl -sk --max-time 2 -o /dev/null --resolve "$NAME:$PORT:127.0.0.1" \
            "https://$NAME:$PORT/" 2>/dev/null
        ;;
    zookeeper)
        # A four-letter word over TLS: the handshake used the keystore, and ZooKeeper
        # itself answered. -ign_eof: wait for the server to close after its answer.
        [[ $(printf ruok | timeout 5 openssl s_client -quiet -ign_eof \
            -connect "127.0.0.1:$PORT" 2>/dev/null) == imok ]]
        ;;
    node-exporter)
        curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/metrics" 2>/dev/null
        ;;
    esac
}

# The one-line diagnosis, then the log's errors (ZooKeeper logs a hundred lines of INFO
# after one), or its last lines when it has none.
report_failure() {
    local log=$DIR/logs/$KIND.log lines reason=$2
    lines=$(grep -E 'ERROR|Caused by|\[(emerg|alert|crit)\]|level=error' "$log" 2>/dev/null || true)
    [[ -n $lines ]] || lines=$(grep -v -E '^\s+at |Server environment:' "$log" 2>/dev/null || true)
    printf '%s: %s %s; from %s:\n' "$PROG" "$(describe)" "$reason" "$log" >&2
    tail -n 15 <<<"$lines" | sed 's/^/    /' >&2
}

# One look at the server during start-up, for `await`: 0 once it answers, 2 when its port
# was taken, 3 when it failed (reported), 1 while it is not up yet.
ready() {
    local events
    # nginx retries a busy port for 2.5 s before it gives up, and ZooKeeper runs on with a
    # keystore it cannot open (every connection then fails): their logs say so at once.
    events=$(grep -o -i -E 'address already in use|Failed to create (key|trust) manager' \
        "$DIR/logs/$KIND.log" 2>/dev/null || true)
    case ${events,,} in
    *"in use"*) return 2 ;;
    *"failed to create"*)
        report_failure "$KIND" "cannot read its keystore"
        return 3
        ;;
    *) ;;
    esac
    # Probe only once our server has logged that it listens: before that, a probe could be
    # answered by whatever else holds the port.
    grep -q -F "$(listening_line)" "$DIR/logs/$KIND.log" 2>/dev/null && probe && return 0
    return 1
}

# Wait until the server answers. 0 when it does, 2 when its port was taken (the caller
# may retry with another), 1 on any other failure (reported).
wait_ready() {
    await "$KIND" answer ready
}

# --- commands ----------------------------------------------------------------------------

parse_start_options() {
    local opt
    while (($# > 0)); do
        opt=$1
        [[ $opt == --* && -n ${2:-} ]] || die "option '$opt' of start wants a value"
        case $KIND:$opt in
        nginx:--cert) CERT=$(absolute "$2" certificate) ;;
        nginx:--key) KEY=$(absolute "$2" key) ;;
        nginx:--name)
            [[ $2 =~ ^[A-Za-z0-9.-]+$ ]] || die "--name wants a DNS name, got '$2'"
            NAME=$2
            ;;
        zookeeper:--keystore) KEYSTORE=$(absolute "$2" keystore) ;;
        zookeeper:--password-file) PASSWORD_FILE=$(absolute "$2" "password file") ;;
        node-exporter:--textfile-dir) TEXTFILE_DIR=$(absolute "$2" "textfile directory") ;;
        *:--parent)
            [[ $2 =~ ^[0-9]+$ ]] || die "--parent wants a process id, got '$2'"
            PARENT=$2
            ;;
        *) die "unknown option '$opt' for start $KIND" ;;
        esac
        shift 2
    done
    case $KIND in
    nginx)
        [[ -n ${CERT:-} && -n ${KEY:-} && -n ${NAME:-} ]] ||
            die "start nginx wants --cert, --key and --name"
        readable_file "$CERT" certificate
        readable_file "$KEY" key
        ;;
    zookeeper)
        [[ -n ${KEYSTORE:-} && -n ${PASSWORD_FILE:-} ]] ||
            die "start zookeeper wants --keystore and --password-file"
        readable_file "$KEYSTORE" keystore
        readable_file "$PASSWORD_FILE" "password file"
        ;;
    node-exporter)
        [[ -n ${TEXTFILE_DIR:-} ]] || die "start node-exporter wants --textfile-dir"
        [[ -d $TEXTFILE_DIR ]] || die "textfile directory $TEXTFILE_DIR does not exist"
        ;;
    esac
}

check_installed() {
    local cmd jar
    case $KIND in
    nginx) cmd=nginx ;;
    zookeeper) cmd=java ;;
    node-exporter) cmd=prometheus-node-exporter ;;
    esac
    for cmd in "$cmd" curl openssl flock setsid timeout; do
        command -v "$cmd" >/dev/null ||
            die "$cmd not found: run tests/sandbox/install.sh (as root) first"
    done
    if [[ $KIND == zookeeper ]]; then
        for jar in ${ZK_CLASSPATH//:/ }; do
            [[ -r $jar ]] || die "$jar not found: run tests/sandbox/install.sh (as root) first"
        done
    fi
}

cmd_start() {
    set_dir "${1:-}" create
    KIND=${2:-}
    [[ -n $KIND && " ${KINDS[*]} " == *" $KIND "* ]] ||
        die "unknown service '$KIND' (one of: ${KINDS[*]})"
    shift 2
    PARENT=
    parse_start_options "$@"
    begin_start
    mkdir -p "$DIR/pids" "$DIR/logs"
    # What `restart` and `reload` need to launch and probe the server again.
    printf '%s\n' "KIND=$KIND" "NAME=${NAME:-}" "TEXTFILE_DIR=${TEXTFILE_DIR:-}" >"$DIR/launch.env"
    [[ -z $PARENT ]] || start_watchdog "$PARENT"

    local attempt rc
    for ((attempt = 1; ; attempt++)); do
        reserve_ports 1
        PORT=${RESERVED[0]}
        write_config
        launch
        rc=0
        wait_ready || rc=$?
        ((rc == 0)) && break
        kill_servers "$KIND"
        release_ports "$PORT"
        if ((rc == 2 && attempt < START_ATTEMPTS)); then
            printf '%s: port %s in use, retrying with another\n' "$KIND" "$PORT" \
                >>"$DIR/logs/start.log"
            continue
        fi
        ((rc != 2)) || report_failure "$KIND" "could not bind a port after $attempt attempts"
        stop_watchdog
        echo stopped >"$DIR/state"
        exit 1
    done
    end_start started "(attempt $attempt)"
}

# Load what `start` recorded, for the commands that act on a running directory.
load_service() {
    [[ -r $DIR/launch.env && -r $DIR/ports.env ]] ||
        die "$DIR is not a service directory: was it started?"
    # Both written by `start` from checked values (no quoting needed).
    # shellcheck source=/dev/null
    source "$DIR/launch.env"
    # shellcheck source=/dev/null
    source "$DIR/ports.env"
}

cmd_stop_server() {
    lock_dir
    load_service
    kill_servers "$KIND"
}

cmd_restart() {
    lock_dir
    load_service
    now_ms
    T0=$NOW_MS
    kill_servers "$KIND"
    launch
    local rc=0
    wait_ready || rc=$?
    ((rc != 2)) || report_failure "$KIND" "cannot bind its port again (another process took it)"
    if ((rc != 0)); then
        kill_servers "$KIND"
        exit 1
    fi
    now_ms
    printf 'restarted in %s ms\n' "$((NOW_MS - T0))" >>"$DIR/logs/start.log"
}

# The pids of the master's workers, one per line.
nginx_workers() {
    ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' || true
}

# nginx -s reload returns once the signal is sent; the master then starts new workers and
# the old ones finish their connections and exit. A client that connects before they are
# gone may still get the old certificate, so this waits until every old worker has exited.
cmd_reload() {
    lock_dir
    load_service
    [[ $KIND == nginx ]] || die "reload is for nginx; a $KIND is restarted (services.sh restart)"
    local master old new out offset deadline
    master=$(pid_of nginx) || die "nginx of $DIR is not running"
    nginx_cmd
    # -t loads the certificate and key as the reload will: a bad pair fails here, with
    # nginx's message, and the running server keeps what it has.
    out=$("${NGINX[@]}" -t 2>&1) || die "nginx -t refuses the configuration: $out"
    old=$(nginx_workers "$master")
    offset=$(stat -c %s "$DIR/logs/nginx.log")
    out=$("${NGINX[@]}" -s reload 2>&1) || die "nginx -s reload failed: $out"
    now_ms
    deadline=$((NOW_MS + TIMEOUT * 1000))
    while true; do
        if tail -c +"$((offset + 1))" "$DIR/logs/nginx.log" | grep -q -E '\[(emerg|alert)\]'; then
            report_failure "$KIND" "did not reload"
            exit 1
        fi
        new=$(nginx_workers "$master")
        if [[ -n $new ]] && ! grep -qxF -f <(printf '%s\n' "$old") <<<"$new"; then
            return 0
        fi
        now_ms
        ((NOW_MS < deadline)) || {
            report_failure "$KIND" "still runs old workers ${TIMEOUT}s after the reload"
            exit 1
        }
        sleep 0.02
    done
}

cmd_stop() {
    [[ -e $DIR/state ]] || return 0
    lock_dir
    local kind
    kind=$(sed -n 's/^KIND=//p' "$DIR/launch.env" 2>/dev/null || true)
    [[ -z $kind ]] || kill_servers "$kind"
    stop_watchdog
    if [[ -r $DIR/ports.env ]]; then
        # shellcheck source=/dev/null
        source "$DIR/ports.env"
        release_ports "${PORT:-}"
    fi
    echo stopped >"$DIR/state"
}

cmd_status() {
    load_service
    server_status "$KIND"
}

dispatch "$@"
