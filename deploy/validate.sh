#!/usr/bin/env bash
# Validates the deployment files without a Docker engine or a cluster: the Kubernetes manifests
# against the Kubernetes API's JSON schemas (kubernetes-validate, strict: unknown fields are
# errors) and compose.yaml against the Compose specification's schema (check-jsonschema).
# Both tools come from PyPI into a virtualenv (target/deploy-venv). .ci/run calls this.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
venv=${SIEVE_DEPLOY_VENV:-$repo/target/deploy-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "kubernetes-validate==1.37.0" "check-jsonschema==0.39.0"
manifests=()
for file in "$here"/kubernetes/*.yaml; do
  [ "$(basename "$file")" = kustomization.yaml ] || manifests+=("$file")
done
"$venv/bin/kubernetes-validate" --strict --kubernetes-version 1.33 "${manifests[@]}"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$here/compose.yaml"
echo "deploy: ${#manifests[@]} Kubernetes manifests and compose.yaml are valid"
