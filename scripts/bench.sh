#!/usr/bin/env bash
# The standard replay benchmark: the workload of scripts/workload.sh (~100k
# users over 35 days, ~10M lines, 1% bots) replayed from the file into the
# embedded SQLite store with 1 and 2 workers. Prints events/s, the per-tick
# store write latency percentiles (hdrhistogram), peak RSS and bytes of state
# per active user. scripts/bench-kafka.sh measures Kafka -> Redis.
#
#   scripts/bench.sh                      # the standard workload
#   USERS=10000 DAYS=7 scripts/bench.sh   # a quick one
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
WORKERS="${WORKERS:-1 2}"
DIR="${BENCH_DIR:-$CARGO_TARGET_DIR/bench}"
DATA="$(scripts/workload.sh)"
BIN="$CARGO_TARGET_DIR/release/clickflow"
echo "== workload: $(wc -l < "$DATA") lines, $(du -h "$DATA" | cut -f1)"
for w in $WORKERS; do
    OUT="$DIR/out-w$w"
    rm -rf "$OUT"
    echo "== replay with $w worker(s)"
    "$BIN" run --input "$DATA" --out "$OUT" --workers "$w" --quiet --json > "$DIR/summary-w$w.json"
    scripts/summary.py "$DIR/summary-w$w.json" "workers=$w"
done
