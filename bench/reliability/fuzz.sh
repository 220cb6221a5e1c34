#!/usr/bin/env bash
# Fuzzes sieve-server's request validation and filter compilation (server/fuzz) for a set time
# per target. Not part of CI. Needs the nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
#   bash bench/reliability/fuzz.sh [SECONDS_PER_TARGET]        (default 60)
# SANITIZER=none skips AddressSanitizer (faster; the targets are safe Rust).
# A crash leaves its input in server/fuzz/artifacts/<target>/: reproduce it with
# `cargo +nightly fuzz run <target> <file>` and add the request to tests/bad_input.rs.
set -euo pipefail
cd "$(dirname "$0")/../../server"
SECONDS_PER_TARGET="${1:-60}"
SANITIZER="${SANITIZER:-address}"
for target in $(cargo +nightly fuzz list); do
  echo "== $target: ${SECONDS_PER_TARGET} s"
  cargo +nightly fuzz run --sanitizer "$SANITIZER" "$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 2>&1 | grep -E '^(#[0-9]+ +DONE|Done|==[0-9]+==|SUMMARY)|panicked' || true
done
