#!/usr/bin/env bash
# Local services for the tests, on 127.0.0.1 only: a Redis server (Debian's
# redis-server) and a Kafka-protocol broker (noida-db 0.2.3 from PyPI, its
# binary started directly). Installs them when missing; pid files and logs
# live under .services/ (or $CLICKFLOW_SERVICES_DIR); `stop` stops exactly the
# processes `start` started.
#
#   scripts/services.sh start|stop|status
#
# Ports: $CLICKFLOW_REDIS_PORT (16379) and $CLICKFLOW_KAFKA_PORT (19092).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${CLICKFLOW_SERVICES_DIR:-$PWD/.services}"
REDIS_PORT="${CLICKFLOW_REDIS_PORT:-16379}"
KAFKA_PORT="${CLICKFLOW_KAFKA_PORT:-19092}"

say() { echo "services: $*" >&2; }

install_redis() {
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return
    say "installing redis-server (apt-get)"
    apt_install redis-server
}

# The broker's binary, from a Python that has noida-db: the project's own
# venv under $DIR, else the machine's python3.
noida_bin() {
    local py
    for py in "$DIR/venv/bin/python3" python3; do
        command -v "$py" >/dev/null 2>&1 || continue
        "$py" -c 'import noida_db, os, sys
b = os.path.join(os.path.dirname(noida_db.__file__), "noida-db")
print(b) if os.access(b, os.X_OK) else sys.exit(1)' 2>/dev/null && return
    done
    return 0
}

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
}

# Into a venv of the project's (a Debian python3 refuses system-wide pip
# installs); python3 and its venv module come from apt when missing.
install_noida() {
    [ -n "$(noida_bin)" ] && return
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        say "installing python3-venv (apt-get)"
        apt_install python3 python3-venv
    fi
    say "installing noida-db==0.2.3 (pip, into $DIR/venv)"
    rm -rf "$DIR/venv"
    python3 -m venv "$DIR/venv"
    "$DIR/venv/bin/python3" -m pip install -q noida-db==0.2.3
    [ -n "$(noida_bin)" ] || { say "noida-db installed but its binary is missing"; exit 1; }
}

# in_use PORT: something listens on 127.0.0.1:PORT already.
in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# alive PIDFILE NAME: the pid in PIDFILE runs a command containing NAME.
alive() {
    [ -f "$1" ] || return 1
    local pid
    pid=$(cat "$1")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$2"
}

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

start() {
    mkdir -p "$DIR"
    install_redis
    install_noida
    if alive "$DIR/redis.pid" redis-server; then
        say "redis already running on 127.0.0.1:$REDIS_PORT"
    else
        if in_use "$REDIS_PORT"; then
            say "127.0.0.1:$REDIS_PORT is taken by a process these scripts did not start; set CLICKFLOW_REDIS_PORT"
            exit 1
        fi
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
            --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" --dir "$DIR"
        wait_port "$REDIS_PORT" || { say "redis did not start; see $DIR/redis.log"; exit 1; }
        for _ in $(seq 1 50); do [ -s "$DIR/redis.pid" ] && break; sleep 0.1; done
        alive "$DIR/redis.pid" redis-server || { say "redis did not write its pid file $DIR/redis.pid; see $DIR/redis.log"; exit 1; }
        say "redis on 127.0.0.1:$REDIS_PORT"
    fi
    if alive "$DIR/kafka.pid" noida-db; then
        say "kafka already running on 127.0.0.1:$KAFKA_PORT"
    else
        if in_use "$KAFKA_PORT"; then
            say "127.0.0.1:$KAFKA_PORT is taken by a process these scripts did not start; set CLICKFLOW_KAFKA_PORT"
            exit 1
        fi
        mkdir -p "$DIR/kafka-data"
        nohup "$(noida_bin)" start --only kafka --kafka-port "$KAFKA_PORT" --data-dir "$DIR/kafka-data" \
            > "$DIR/kafka.log" 2>&1 &
        echo $! > "$DIR/kafka.pid"
        wait_port "$KAFKA_PORT" && alive "$DIR/kafka.pid" noida-db || { say "kafka did not start; see $DIR/kafka.log"; exit 1; }
        say "kafka (noida-db) on 127.0.0.1:$KAFKA_PORT"
    fi
    printf 'CLICKFLOW_REDIS_URL=redis://127.0.0.1:%s/\nCLICKFLOW_KAFKA_BROKERS=127.0.0.1:%s\n' "$REDIS_PORT" "$KAFKA_PORT" > "$DIR/env"
}

stop_one() {
    local pidfile=$1 name=$2
    if alive "$pidfile" "$name"; then
        local pid
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        if [ -d "/proc/$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
        say "stopped $name ($pid)"
    fi
    rm -f "$pidfile"
}

stop() {
    stop_one "$DIR/redis.pid" redis-server
    stop_one "$DIR/kafka.pid" noida-db
}

status() {
    local rc=0
    if alive "$DIR/redis.pid" redis-server; then echo "redis: running, pid $(cat "$DIR/redis.pid"), 127.0.0.1:$REDIS_PORT"; else echo "redis: stopped"; rc=1; fi
    if alive "$DIR/kafka.pid" noida-db; then echo "kafka: running, pid $(cat "$DIR/kafka.pid"), 127.0.0.1:$KAFKA_PORT"; else echo "kafka: stopped"; rc=1; fi
    return $rc
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: scripts/services.sh start|stop|status" >&2; exit 2 ;;
esac
