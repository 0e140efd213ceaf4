#!/usr/bin/env bash
# Launches every process of a clickflow cluster on this machine from one
# config: N processes x W workers as its [cluster] section says, each with its
# own log and pid file, and waits until all have joined. Stops exactly the
# processes it started.
#
#   scripts/cluster.sh start CONFIG [clickflow run arguments...]   # e.g. --input FILE --out DIR
#   scripts/cluster.sh wait  CONFIG     # until every process has exited; fails if one failed
#   scripts/cluster.sh status CONFIG
#   scripts/cluster.sh stop  CONFIG     # SIGTERM (a live run stops after its tick), SIGKILL after 15 s
#
# State (pid, log and exit status per process) lives in
# $CLICKFLOW_CLUSTER_DIR, default .cluster/<config name>/. On several machines,
# run `clickflow run --config CONFIG --process P` on each (see the README).
#
# The processes run in the caller's directory: relative paths in CONFIG and
# the arguments mean what they mean there.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${CLICKFLOW_BIN:-$CARGO_TARGET_DIR/release/clickflow}"

say() { echo "cluster: $*" >&2; }
usage() { echo "usage: scripts/cluster.sh start|wait|status|stop CONFIG [clickflow run arguments...]" >&2; exit 2; }

[ $# -ge 2 ] || usage
CMD=$1
CONFIG=$2
shift 2
[ -f "$CONFIG" ] || { say "no config file $CONFIG"; exit 1; }
NAME=$(basename "$CONFIG" .toml)
DIR="${CLICKFLOW_CLUSTER_DIR:-$ROOT/.cluster/$NAME}"

# processes, workers per process and the join timeout (s) of CONFIG's [cluster].
read -r PROCESSES WORKERS JOIN_S < <(python3 - "$CONFIG" <<'PY'
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
cl = c.get("cluster", {})
t = str(cl.get("join_timeout", "60s"))
units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
num = "".join(ch for ch in t if ch.isdigit()) or "60"
unit = t[len(num):] or "s"
print(cl.get("processes", 1), cl.get("workers", c.get("run", {}).get("workers", 1)), int(int(num) * units.get(unit, 1)) + 5)
PY
)

# alive P: process P's pid runs clickflow with this config.
alive() {
    local f="$DIR/p$1.pid" pid
    [ -f "$f" ] || return 1
    pid=$(cat "$f")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "--config $CONFIG --process $1 "
}

start() {
    # The project's own binary, rebuilt if stale (CLICKFLOW_BIN: that one as it is).
    if [ -z "${CLICKFLOW_BIN:-}" ]; then
        (cd "$ROOT" && cargo build --release --quiet --bin clickflow)
    fi
    [ -x "$BIN" ] || { say "no clickflow binary at $BIN"; exit 1; }
    for p in $(seq 0 $((PROCESSES - 1))); do
        if alive "$p"; then
            say "process $p of $CONFIG is running already (pid $(cat "$DIR/p$p.pid")); stop it first"
            exit 1
        fi
    done
    mkdir -p "$DIR"
    rm -f "$DIR"/p*.pid "$DIR"/p*.rc "$DIR"/p*.tmp "$DIR"/p*.log
    for p in $(seq 0 $((PROCESSES - 1))); do
        (
            "$BIN" run --config "$CONFIG" --process "$p" "$@" > "$DIR/p$p.log" 2>&1 &
            echo $! > "$DIR/p$p.pid.tmp" && mv "$DIR/p$p.pid.tmp" "$DIR/p$p.pid"
            set +e
            wait $!
            # Written whole, then renamed: a reader never sees an empty status.
            echo $? > "$DIR/p$p.rc.tmp" && mv "$DIR/p$p.rc.tmp" "$DIR/p$p.rc"
        ) < /dev/null > /dev/null 2>&1 &
    done
    # Wait for the pid files, then for every process to join (or one to fail).
    local deadline=$((SECONDS + JOIN_S)) joined
    while :; do
        joined=0
        for p in $(seq 0 $((PROCESSES - 1))); do
            if [ -f "$DIR/p$p.rc" ] && ! grep -q "joined the cluster" "$DIR/p$p.log" 2>/dev/null && [ "$PROCESSES" -gt 1 ]; then
                say "process $p exited (status $(cat "$DIR/p$p.rc")) before the cluster formed:"
                tail -5 "$DIR/p$p.log" >&2
                stop
                exit 1
            fi
            if [ "$PROCESSES" -eq 1 ] || grep -q "joined the cluster" "$DIR/p$p.log" 2>/dev/null; then
                joined=$((joined + 1))
            fi
        done
        [ "$joined" -eq "$PROCESSES" ] && break
        if [ $SECONDS -ge $deadline ]; then
            say "the cluster did not form within ${JOIN_S}s ($joined of $PROCESSES joined); logs in $DIR"
            stop
            exit 1
        fi
        sleep 0.1
    done
    say "$PROCESSES process(es) x $WORKERS worker(s) joined; logs and pids in $DIR"
}

wait_all() {
    local rc=0 code
    for p in $(seq 0 $((PROCESSES - 1))); do
        [ -f "$DIR/p$p.pid" ] || { say "process $p was not started"; rc=1; continue; }
        local gone=0
        while [ ! -f "$DIR/p$p.rc" ]; do
            # The process is gone but no status came (its wrapper was killed).
            if ! kill -0 "$(cat "$DIR/p$p.pid")" 2>/dev/null; then
                gone=$((gone + 1))
                [ $gone -ge 20 ] && break
            fi
            sleep 0.1
        done
        code=$(cat "$DIR/p$p.rc" 2>/dev/null || echo "unknown (no status was recorded)")
        if [ "$code" != 0 ]; then
            say "process $p exited with status $code:"
            tail -5 "$DIR/p$p.log" >&2
            rc=1
        fi
    done
    return $rc
}

status() {
    local rc=0
    for p in $(seq 0 $((PROCESSES - 1))); do
        if alive "$p"; then
            echo "process $p: running, pid $(cat "$DIR/p$p.pid"), log $DIR/p$p.log"
        elif [ -f "$DIR/p$p.rc" ]; then
            echo "process $p: exited with status $(cat "$DIR/p$p.rc"), log $DIR/p$p.log"
            rc=1
        else
            echo "process $p: not running"
            rc=1
        fi
    done
    return $rc
}

stop() {
    local p pid
    for p in $(seq 0 $((PROCESSES - 1))); do
        alive "$p" && kill -TERM "$(cat "$DIR/p$p.pid")" 2>/dev/null || true
    done
    for p in $(seq 0 $((PROCESSES - 1))); do
        if alive "$p"; then
            pid=$(cat "$DIR/p$p.pid")
            for _ in $(seq 1 150); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
            if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
            say "stopped process $p ($pid)"
        fi
    done
}

case "$CMD" in
    start) start "$@" ;;
    wait) wait_all ;;
    status) status ;;
    stop) stop ;;
    *) usage ;;
esac
