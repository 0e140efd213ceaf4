#!/usr/bin/env bash
# The standard benchmark workload: a seeded ~100k users over 35 days (~10M
# lines, 1% bots), generated once under target/bench/ and reused. Prints its
# path. USERS, DAYS, RATE, BOTS, SEED change it (e.g. USERS=10000 DAYS=7).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
USERS="${USERS:-100000}"
DAYS="${DAYS:-35}"
RATE="${RATE:-1.5}"
BOTS="${BOTS:-0.01}"
SEED="${SEED:-7}"
DIR="${BENCH_DIR:-$CARGO_TARGET_DIR/bench}"
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/clickflow"
mkdir -p "$DIR"
DATA="$DIR/workload-u$USERS-d$DAYS-r$RATE-b$BOTS-s$SEED.jsonl"
if [ ! -s "$DATA" ]; then
    echo "== generating $DATA" >&2
    "$BIN" generate --users "$USERS" --days "$DAYS" --rate "$RATE" --bot-share "$BOTS" --seed "$SEED" --output "$DATA.tmp" >&2
    mv "$DATA.tmp" "$DATA"
fi
echo "$DATA"
