#!/usr/bin/env bash
# Replay throughput of clusters on this machine: the standard workload of
# scripts/workload.sh replayed from the file into SQLite as SHAPES
# (processes x workers per process; default 1x2, 2x1, 2x2), each launched
# with scripts/cluster.sh on 127.0.0.1. A file is one reader (global worker 0)
# whose events are exchanged by user to every worker, across processes over
# TCP; on a 2-core machine this measures what the cross-process exchange
# costs, not a speed-up. Prints process 0's summary (the cluster's counts).
#
#   scripts/bench-cluster.sh
#   USERS=10000 DAYS=7 SHAPES="1x2 2x2" scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
SHAPES="${SHAPES:-1x2 2x1 2x2}"
DIR="${BENCH_DIR:-$CARGO_TARGET_DIR/bench}"
PORT="${BENCH_PORT:-23101}"
DATA="$(scripts/workload.sh)"
echo "== workload: $(wc -l < "$DATA") lines"
for shape in $SHAPES; do
    P=${shape%x*}
    W=${shape#*x}
    CFG="$DIR/cluster-$shape.toml"
    ADDRS=$(python3 -c "import sys; p, port = int(sys.argv[1]), int(sys.argv[2]); print(', '.join(f'\"127.0.0.1:{port + i}\"' for i in range(p)))" "$P" "$PORT")
    printf '[cluster]\nprocesses = %s\nworkers = %s\naddresses = [%s]\n' "$P" "$W" "$ADDRS" > "$CFG"
    OUT="$DIR/cluster-out-$shape"
    STATE="$DIR/cluster-state-$shape"
    rm -rf "$OUT"
    echo "== $P process(es) x $W worker(s)"
    CLICKFLOW_CLUSTER_DIR="$STATE" scripts/cluster.sh start "$CFG" --input "$DATA" --out "$OUT" --quiet --json
    CLICKFLOW_CLUSTER_DIR="$STATE" scripts/cluster.sh wait "$CFG"
    grep '^{' "$STATE/p0.log" | tail -1 > "$DIR/cluster-summary-$shape.json"
    scripts/summary.py "$DIR/cluster-summary-$shape.json" "${P}x${W}"
done
