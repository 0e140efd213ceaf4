#!/usr/bin/env bash
# The README's test command: installs what the tests need, then builds once
# (release, shared by tests and benches) and runs every test and lint.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo not found; install the Rust toolchain (https://rustup.rs)" >&2
    exit 1
fi
if ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add clippy
fi
# The conformance cases and real samples are in the repository (tests/);
# ../shared/conformance and ../shared/data/real, when they exist, add theirs.

echo "== services (Redis, Kafka-protocol broker on 127.0.0.1)"
# Stopped at the end only if this run started them (a developer's stay up).
if ! scripts/services.sh status >/dev/null 2>&1; then
    trap 'scripts/services.sh stop' EXIT
fi
scripts/services.sh start
set -a
# shellcheck disable=SC1091
. "${CLICKFLOW_SERVICES_DIR:-.services}/env"
set +a

echo "== build (release)"
cargo build --release --all-targets
echo "== tests"
cargo test --release --workspace
echo "== dataflows tests with debug assertions and overflow checks (profile checked)"
cargo test --profile checked -p clickflow-dataflows
echo "== clippy"
cargo clippy --release --workspace --all-targets -- -D warnings
echo "== all tests passed"
