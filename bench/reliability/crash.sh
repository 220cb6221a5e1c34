#!/usr/bin/env bash
# Crash safety at length: the CI crash test (tests/crash.rs) with more kill -9 rounds.
#   bash bench/reliability/crash.sh [KILLS] [SEED]      (default 20 kills, seed 7)
# Prints one line per kill and the total: kills survived, acknowledged writes lost (must be 0).
set -euo pipefail
cd "$(dirname "$0")/../.."
SIEVE_CRASH_KILLS="${1:-20}" SIEVE_CRASH_SEED="${2:-7}" \
  cargo test --release -p sieve-server --test server -- crash:: --nocapture 2>&1 |
  grep -E '^(kill|[0-9]+ kills)|panicked|FAILED|test result'
