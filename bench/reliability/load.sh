#!/usr/bin/env bash
# Load held: 8 clients for 60 s mixing ingest batches (20 docs), searches through a cross-encoder
# cascade (20 candidates -> keep 10) and deletes, run twice against one release server; prints
# each run's report and the server's resident memory after it (VmRSS, and the peak VmHWM).
#   bash bench/reliability/load.sh [SECONDS] [CLIENTS]          (default 60 s, 8 clients)
# Needs ../shared (the SciFact cross-encoder and corpus); elsewhere set SIEVE_CE_DIR and CORPUS.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN="${1:-60}"
CLIENTS="${2:-8}"
CE_DIR="${SIEVE_CE_DIR:-../shared/models/sieve--sieve-ce-minilm-l6-scifact}"
CORPUS="${CORPUS:-../shared/data/beir/scifact/corpus.jsonl.gz}"
cargo build --release -q -p sieve-server -p sieve-client
WORK="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/sieve.toml" <<TOML
[[models]]
name = "sieve/ce"
path = "$CE_DIR"

[[cascade]]
model = "sieve/ce"
keep = 10
TOML
./target/release/sieve-server --config "$WORK/sieve.toml" --data-dir "$WORK/data" \
  --listen 127.0.0.1:0 --log-level warn > "$WORK/stdout" &
PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/stdout" 2>/dev/null && break; sleep 0.2; done
ADDR="http://$(sed -n 's/^sieve-server listening on //p' "$WORK/stdout")"
memory() { awk '/^VmRSS|^VmHWM/ {printf "%s %d MiB  ", $1, $2/1024}' "/proc/$PID/status"; echo; }
echo "server $ADDR (pid $PID) after start: $(memory)"
for run in 1 2; do
  ./target/release/sieve --addr "$ADDR" bench load -c load --clients "$CLIENTS" \
    --duration "$SECONDS_PER_RUN" --corpus "$CORPUS" --candidates 20 --out "$WORK/run$run.json" > /dev/null
  cat "$WORK/run$run.json"
  echo "after run $run: $(memory)"
done
