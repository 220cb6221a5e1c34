#!/usr/bin/env bash
# The Python SDK's tests against the live server: makes a virtualenv (once), installs the SDK with
# its dev extras (grpcio-tools, pytest) from PyPI, checks that the generated stubs match proto/,
# then runs pytest. `cargo test --workspace --release` runs this (tests/sdk.rs) with
# SIEVE_SERVER_BIN set to the freshly built server; by hand, build the server first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${SIEVE_PY_VENV:-$repo/target/sdk/python-venv}
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
  echo "the Python SDK tests need Python 3.9+ ($python not found; set PYTHON)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here[dev]"
"$venv/bin/python" "$here/generate.py" --check
cd "$here"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
