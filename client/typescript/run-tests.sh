#!/usr/bin/env bash
# The TypeScript SDK's tests against the live server: installs the locked dependencies from npm
# (once), checks that src/gen matches a fresh `buf generate` of ../../proto (ts-proto), compiles,
# and runs the Node test runner. `cargo test --workspace --release` runs this (tests/sdk.rs) with
# SIEVE_SERVER_BIN set to the freshly built server; by hand, build the server first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "the TypeScript SDK tests need Node.js 20+ and npm (not found)" >&2
  exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
sed "s|out: src/gen|out: $fresh|" buf.gen.yaml > "$fresh.yaml"
./node_modules/.bin/buf generate ../../proto --template "$fresh.yaml"
rm -f "$fresh.yaml"
if ! diff -r "$fresh" src/gen >/dev/null; then
  diff -r "$fresh" src/gen | head -20 >&2
  echo "src/gen is stale: run \`npm run generate\` in client/typescript" >&2
  exit 1
fi
echo "src/gen matches proto/"
rm -rf dist
./node_modules/.bin/tsc -p tsconfig.json
exec node --test --test-reporter=spec dist/test/
