#!/usr/bin/env bash
# Kafka -> Redis benchmark (the production path) on the standard workload of
# scripts/workload.sh, against the local services (started if needed):
#
#  1. replay: the workload produced once to a PARTITIONS-partition topic keyed
#     by user_id, then `clickflow run --until-end` into Redis with trend deltas
#     and dead letters to Kafka, for each worker count in WORKERS: events/s,
#     per-tick write latency (tick closed -> in the store), peak RSS;
#  2. live: wall-clock mode while `clickflow produce --rate LIVE_RATE --retime`
#     feeds a fresh topic for LIVE_SECONDS: per-tick write latency and how far
#     the store's as_of trails the wall clock (freshness).
#
#   scripts/bench-kafka.sh
#   USERS=10000 DAYS=7 LIVE_SECONDS=20 scripts/bench-kafka.sh   # a quick one
#   WORKERS= KAFKA_BROKERS=127.0.0.1:29092 scripts/bench-kafka.sh   # only the live run, on another broker
#
# noida-db (the services' broker) answers an empty fetch at once instead of
# holding it for fetch.wait.max.ms, so idle consumers spin on it (a live run
# with no traffic burns most of a core there, ~1/10 of that on tansu); and it
# ignores fetch.max.bytes (multi-GB RSS on replays). Both skew its numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
WORKERS="${WORKERS-1 2}"
PARTITIONS="${PARTITIONS:-2}"
LIVE_RATE="${LIVE_RATE:-20000}"
LIVE_SECONDS="${LIVE_SECONDS:-60}"
DIR="${BENCH_DIR:-$CARGO_TARGET_DIR/bench}"
DATA="$(scripts/workload.sh)"
BIN="$CARGO_TARGET_DIR/release/clickflow"
scripts/services.sh start
set -a
# shellcheck disable=SC1091
. "${CLICKFLOW_SERVICES_DIR:-.services}/env"
set +a
# KAFKA_BROKERS: another Kafka-protocol broker instead of the services' noida-db.
CLICKFLOW_KAFKA_BROKERS="${KAFKA_BROKERS:-$CLICKFLOW_KAFKA_BROKERS}"
REDIS_CLI=(redis-cli -u "$CLICKFLOW_REDIS_URL")
LINES=$(wc -l < "$DATA")
TOPIC="bench.$(basename "$DATA" .jsonl | tr -c 'a-zA-Z0-9.\n-' '-').p$PARTITIONS"

config() { # config FILE TOPIC PREFIX MODE
    cat > "$1" <<CFG
[clock]
mode = "$4"

[input]
kind = "kafka"

[kafka]
brokers = "$CLICKFLOW_KAFKA_BROKERS"
topic = "$2"
group_id = "$2.group"
trend_deltas_topic = "$2.deltas"
dead_letter_topic = "$2.dead"

[output]
trend_deltas = "kafka"
dead_letters = "kafka"
dir = "$DIR/kafka-out"

[store]
kind = "redis"

[redis]
url = "$CLICKFLOW_REDIS_URL"
prefix = "$3"
CFG
}

clear_prefix() {
    "${REDIS_CLI[@]}" --scan --pattern "$1*" | xargs -r -n 1000 "${REDIS_CLI[@]}" del > /dev/null
}

mkdir -p "$DIR/kafka-out"
config "$DIR/kafka-replay.toml" "$TOPIC" "bench:" event
# The broker keeps its data under .services/: produce the workload once.
MARK="${CLICKFLOW_SERVICES_DIR:-.services}/bench-$TOPIC-$(echo "$CLICKFLOW_KAFKA_BROKERS" | tr -c 'a-zA-Z0-9\n' '-').produced"
if [ ! -f "$MARK" ]; then
    echo "== producing $LINES lines to $TOPIC ($PARTITIONS partitions, keyed by user_id)"
    "$BIN" produce --config "$DIR/kafka-replay.toml" --input "$DATA" --partitions "$PARTITIONS"
    touch "$MARK"
fi
for w in $WORKERS; do
    clear_prefix "bench:"
    echo "== replay from Kafka into Redis with $w worker(s)"
    # A fresh group and output topics per run: the store is empty, every tick is written.
    RUN="$TOPIC.w$w.$(date +%s)"
    config "$DIR/kafka-replay-w$w.toml" "$TOPIC" "bench:" event
    sed -i "s/^group_id = .*/group_id = \"$RUN.group\"/; s/^trend_deltas_topic = .*/trend_deltas_topic = \"$RUN.deltas\"/; s/^dead_letter_topic = .*/dead_letter_topic = \"$RUN.dead\"/" "$DIR/kafka-replay-w$w.toml"
    "$BIN" run --config "$DIR/kafka-replay-w$w.toml" --until-end --workers "$w" --quiet --json > "$DIR/kafka-summary-w$w.json"
    scripts/summary.py "$DIR/kafka-summary-w$w.json" "kafka->redis workers=$w"
done
clear_prefix "bench:"

LIVE="bench.live.$(date +%s)"
clear_prefix "live:"
config "$DIR/kafka-live.toml" "$LIVE" "live:" wall
LIMIT=$((LIVE_RATE * LIVE_SECONDS))
echo "== live: $LIVE_RATE events/s for ${LIVE_SECONDS}s, timestamps set to the wall clock, wall-clock mode, 2 workers"
"$BIN" produce --config "$DIR/kafka-live.toml" --input "$DATA" --partitions "$PARTITIONS" --limit 1 --retime > /dev/null 2>&1
"$BIN" run --config "$DIR/kafka-live.toml" --workers 2 --quiet --json > "$DIR/kafka-live-summary.json" &
RUN_PID=$!
trap 'kill -TERM "$RUN_PID" 2>/dev/null || true' EXIT
"$BIN" produce --config "$DIR/kafka-live.toml" --input "$DATA" --rate "$LIVE_RATE" --retime --limit "$LIMIT"
sleep 8
kill -TERM "$RUN_PID"
wait "$RUN_PID"
scripts/summary.py "$DIR/kafka-live-summary.json" "live wall-clock workers=2"
clear_prefix "live:"
