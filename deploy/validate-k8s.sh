#!/usr/bin/env bash
# Validates the Kubernetes manifests offline: renders the kustomize base and checks every
# resource against the API schemas of a current Kubernetes release, rejecting unknown fields.
#
#   deploy/validate-k8s.sh            # needs `pip install kubernetes-validate`
#
# Renders with `kubectl kustomize` when kubectl is installed, else with
# deploy/render-kustomize.py (which handles the `resources`-only base and refuses anything else).
set -euo pipefail
cd "$(dirname "$0")/.."

version="${K8S_VERSION:-1.37.0}"
rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT

if command -v kubectl >/dev/null 2>&1; then
  renderer="kubectl kustomize"
  kubectl kustomize deploy/k8s >"$rendered"
else
  renderer="deploy/render-kustomize.py"
  python3 deploy/render-kustomize.py deploy/k8s >"$rendered"
fi

# An empty stream would validate; make sure every resource got through.
count="$(grep -c '^kind: ' "$rendered" || true)"
if [ "$count" -lt 7 ]; then
  echo "validate-k8s: only $count resources rendered by $renderer" >&2
  exit 1
fi
python3 -m kubernetes_validate --strict --quiet --kubernetes-version "$version" "$rendered"
echo "validate-k8s: $count resources valid for Kubernetes $version (rendered by $renderer)"
