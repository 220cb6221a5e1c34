#!/usr/bin/env bash
# Validates the deployment files without a Docker engine or a cluster: the Kubernetes manifests
# (standalone and cluster) against the Kubernetes API's JSON schemas (kubernetes-validate,
# strict: unknown fields are errors), compose.yaml against the Compose specification's schema,
# and the NATS chart values of cluster mode against nats-values.schema.json (the chart's keys
# Sieve sets; the chart cannot be fetched on CI machines to render it) with check-jsonschema.
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
for file in "$here"/kubernetes/*.yaml "$here"/kubernetes/cluster/*.yaml; do
  case "$(basename "$file")" in
    kustomization.yaml | nats-values.yaml) ;;
    *) manifests+=("$file") ;;
  esac
done
"$venv/bin/kubernetes-validate" --strict --kubernetes-version 1.33 "${manifests[@]}"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$here/compose.yaml"
cluster="$here/kubernetes/cluster"
"$venv/bin/check-jsonschema" --schemafile "$cluster/nats-values.schema.json" "$cluster/nats-values.yaml"
echo "deploy: ${#manifests[@]} Kubernetes manifests, compose.yaml and the NATS chart values are valid"
