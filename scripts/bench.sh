#!/usr/bin/env bash
# The standard replay benchmark: a seeded workload of ~100k users over 35
# days (~10M lines, 1% bots) generated once, then replayed with 1 and 2
# workers. Prints events/s, the per-tick store write latency percentiles
# (hdrhistogram), peak RSS and bytes of state per active user.
#
#   scripts/bench.sh                 # the standard workload
#   USERS=10000 DAYS=7 scripts/bench.sh   # a quick one
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
USERS="${USERS:-100000}"
DAYS="${DAYS:-35}"
RATE="${RATE:-1.5}"
BOTS="${BOTS:-0.01}"
SEED="${SEED:-7}"
WORKERS="${WORKERS:-1 2}"
DIR="${BENCH_DIR:-$CARGO_TARGET_DIR/bench}"

cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/clickflow"
mkdir -p "$DIR"
DATA="$DIR/workload-u$USERS-d$DAYS-r$RATE-b$BOTS-s$SEED.jsonl"
if [ ! -s "$DATA" ]; then
    echo "== generating $DATA"
    "$BIN" generate --users "$USERS" --days "$DAYS" --rate "$RATE" --bot-share "$BOTS" --seed "$SEED" --output "$DATA.tmp"
    mv "$DATA.tmp" "$DATA"
fi
echo "== workload: $(wc -l < "$DATA") lines, $(du -h "$DATA" | cut -f1)"
for w in $WORKERS; do
    OUT="$DIR/out-w$w"
    rm -rf "$OUT"
    echo "== replay with $w worker(s)"
    "$BIN" run --input "$DATA" --out "$OUT" --workers "$w" --quiet --json > "$DIR/summary-w$w.json"
    python3 - "$DIR/summary-w$w.json" "$w" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
users = max(s["users_with_features"], 1)
print(f"workers={sys.argv[2]}  lines={s['lines_read']}  wall={s['wall_s']:.2f}s  events/s={s['events_per_s']:,.0f}")
print(f"  accepted={s['accepted']}  invalid={s['invalid']}  late={s['late']}  bot_events={s['bot_events']}  bots={s['bots_flagged']}")
print(f"  tick write latency: p50={s['write_p50_us']/1000:.1f} ms  p99={s['write_p99_us']/1000:.1f} ms  max={s['write_max_us']/1000:.1f} ms  ({s['ticks_written']} ticks)")
print(f"  peak RSS={s['peak_rss_bytes']/2**20:.0f} MiB  active users={s['users_with_features']}  sessions={s['sessions']}")
print(f"  peak RSS per active user={s['peak_rss_bytes']/users:,.0f} bytes (an upper bound on state: includes buffers and the SQLite cache)")
PY
done
