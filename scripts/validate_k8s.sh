#!/usr/bin/env bash
# Renders the Kubernetes overlays (deploy/k8s/overlays/*) with kubectl's built-in kustomize and
# validates every object offline against the Kubernetes OpenAPI schemas that the PyPI package
# kubernetes-validate ships, in strict mode (an unknown field is an error). Writes the rendered
# YAML to $1 (default: a temp dir). Needs kubectl (any version with `kubectl kustomize`) and
# python3; the validator goes into a venv under ~/.cache on first use.
#
# The cluster token Secret is generated from deploy/k8s/base/token.env (git-ignored); when it is
# missing, a throwaway one is written for the render and removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
k8s_version="${LASER_K8S_VERSION:-1.33.0}"

command -v kubectl >/dev/null || { echo "validate_k8s: kubectl not found (apt-get install kubectl)" >&2; exit 1; }

token=deploy/k8s/base/token.env
created=0
if [[ ! -e "$token" ]]; then
    printf 'token=render-only-%s\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$token"
    created=1
fi
cleanup() { if [[ $created == 1 ]]; then rm -f "$token"; fi; }
trap cleanup EXIT

venv="${LASER_K8S_VENV:-$HOME/.cache/laser-k8s-validate}"
if [[ ! -x "$venv/bin/kubernetes-validate" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'kubernetes-validate==1.37.0'
fi

for overlay in deploy/k8s/overlays/*/; do
    name="$(basename "$overlay")"
    kubectl kustomize "$overlay" > "$out/$name.yaml"
    kinds="$(grep -c '^kind:' "$out/$name.yaml")"
    echo "validate_k8s: $name: $kinds objects rendered to $out/$name.yaml"
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s_version" "$out/$name.yaml"
    echo "validate_k8s: $name: all $kinds objects valid (Kubernetes $k8s_version schemas, strict)"
done
