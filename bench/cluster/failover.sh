#!/usr/bin/env bash
# The longest ingest ack gap while a NATS server of the local cluster is lost, kill -9 against
# SIGTERM (SCALE.md figures). Starts deploy/cluster/local.sh's cluster (its own state folder),
# then for each signal: ingests SciFact documents with random vectors through the router in
# DURABLE batches, one batch in flight (so each ack's latency is the gap between acks), sends
# the signal to nats-2 (the leader of about a third of the partition streams, and every batch
# touches every partition) after $SIEVE_FAILOVER_AFTER seconds, waits for the ingest to end,
# then starts nats-2 again and waits until the shards have caught up. Prints one JSON line per
# signal: ack p50/p99/max ms, docs/s. Everything stops by PID at the end.
#
#   bench/cluster/failover.sh            (needs ../shared/data/beir/scifact)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
export SIEVE_CLUSTER_DIR="${SIEVE_CLUSTER_DIR:-$repo/target/failover-cluster}"
export SIEVE_ROUTER_LISTEN="${SIEVE_ROUTER_LISTEN:-127.0.0.1:7790}"
export SIEVE_NATS_PORT="${SIEVE_NATS_PORT:-14222}"
docs="${SIEVE_FAILOVER_DOCS:-20000}"
after="${SIEVE_FAILOVER_AFTER:-5}"
corpus="$repo/../shared/data/beir/scifact/corpus.jsonl.gz"
[[ -f "$corpus" ]] || { echo "failover: $corpus is missing" >&2; exit 1; }
local_sh="$repo/deploy/cluster/local.sh"
cargo build --release -q -p sieve-server -p sieve-client --manifest-path "$repo/Cargo.toml"
sieve="$repo/target/release/sieve"
trap 'bash "$local_sh" clean >/dev/null 2>&1 || true' EXIT
bash "$local_sh" clean >/dev/null 2>&1 || true
addr="$(bash "$local_sh" up)"
for signal in KILL TERM; do
  collection="failover-$(echo "$signal" | tr 'A-Z' 'a-z')"
  out="$SIEVE_CLUSTER_DIR/$collection.json"
  "$sieve" --addr "$addr" bench ingest --collection "$collection" --corpus "$corpus" \
    --docs "$docs" --ack durable --sequential >"$out" &
  ingest=$!
  sleep "$after"
  kill -"$signal" "$(cat "$SIEVE_CLUSTER_DIR/pids/nats-2")"
  wait "$ingest"
  bash "$local_sh" up >/dev/null
  python3 - "$signal" "$out" <<'PY'
import json, sys
signal, path = sys.argv[1], sys.argv[2]
report = json.load(open(path))
ack = report["ms_per_batch"]
print(json.dumps({"signal": signal, "documents": report["accepted"],
                  "docs_per_sec": round(report["docs_per_sec"], 1),
                  "ack_ms": {k: round(ack[k], 1) for k in ("p50", "p99", "max")}}))
PY
  # Let nats-2 rejoin and its streams catch up before the next round.
  sleep 10
done
