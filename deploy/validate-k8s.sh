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
if [ "$count" -lt 6 ]; then
  echo "validate-k8s: only $count resources rendered by $renderer" >&2
  exit 1
fi
python3 -m kubernetes_validate --strict --quiet --kubernetes-version "$version" "$rendered"
echo "validate-k8s: $count resources valid for Kubernetes $version (rendered by $renderer)"

# What the schemas cannot say: the coordinator serves its HTTP port on 8080 with HTTP probes
# and scrape annotations, and workers serve metrics on 9090 with annotations of their own.
python3 - "$rendered" <<'PY'
import sys
import yaml

docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(sys.argv[1])) if d}

def pod(kind, name):
    template = docs[(kind, name)]["spec"]["template"]
    return template["metadata"].get("annotations", {}), template["spec"]["containers"][0]

def check(ok, what):
    if not ok:
        sys.exit("validate-k8s: " + what)

env = lambda c: {e["name"]: e.get("value") for e in c.get("env", [])}
notes, c = pod("StatefulSet", "fanfold-coordinator")
check(notes.get("prometheus.io/scrape") == "true" and notes.get("prometheus.io/port") == "8080"
      and notes.get("prometheus.io/path") == "/metrics", "coordinator scrape annotations")
check(env(c).get("FANFOLD_HTTP_LISTEN") == "0.0.0.0:8080", "coordinator FANFOLD_HTTP_LISTEN")
# Tokens from the Secret, required: no pod runs without them, and the coordinator is not
# told to accept everyone.
def secret_key(c, name):
    refs = [e["valueFrom"]["secretKeyRef"] for e in c.get("env", [])
            if e["name"] == name and "secretKeyRef" in e.get("valueFrom", {})]
    return refs and refs[0]["name"] == "fanfold-credentials" and refs[0]["key"] == name \
        and not refs[0].get("optional")
check("FANFOLD_INSECURE" not in env(c), "the coordinator runs with tokens, not --insecure")
check(env(c).get("FANFOLD_DATA_ROOTS") == "/data", "the coordinator confines inputs to /data")
check(secret_key(c, "FANFOLD_AUTH_TOKEN_LINES"),
      "the coordinator requires FANFOLD_AUTH_TOKEN_LINES from the fanfold-credentials Secret")
# Besides its key of fanfold-credentials, a pod takes only the optional object-store Secret.
def object_store_only(c):
    refs = [s["secretRef"] for s in c.get("envFrom", []) if "secretRef" in s]
    return refs == [{"name": "fanfold-object-store", "optional": True}]
check(object_store_only(c),
      "the coordinator gets no other secret (not the workers' token) but the object store's")
check({p["name"]: p["containerPort"] for p in c["ports"]}.get("http") == 8080, "coordinator http port")
check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "coordinator readiness probe on /readyz")
check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "coordinator liveness probe on /healthz")
service = docs[("Service", "fanfold-coordinator")]["spec"]["ports"]
check(any(p["port"] == 8080 for p in service), "the Service exposes 8080")
notes, c = pod("Deployment", "fanfold-worker")
check(notes.get("prometheus.io/scrape") == "true" and notes.get("prometheus.io/port") == "9090",
      "worker scrape annotations")
check(env(c).get("FANFOLD_METRICS_LISTEN") == "0.0.0.0:9090", "worker FANFOLD_METRICS_LISTEN")
check(secret_key(c, "FANFOLD_TOKEN"),
      "the workers require FANFOLD_TOKEN from the fanfold-credentials Secret")
check(object_store_only(c), "the workers read objects with the object store's Secret, optional")
check(("Secret", "fanfold-credentials") not in docs,
      "the Secret is not in the base (applying it again would empty it)")
print("validate-k8s: HTTP port, probes, scrape annotations and tokens in place")
PY

# The node-logs example (deploy/k8s-examples/node-logs): the base plus a worker on every node
# offering the node's /var/log, read-only, named after its node.
example="$(mktemp)"
trap 'rm -f "$rendered" "$example"' EXIT
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize deploy/k8s-examples/node-logs >"$example"
else
  python3 deploy/render-kustomize.py deploy/k8s-examples/node-logs >"$example"
fi
python3 -m kubernetes_validate --strict --quiet --kubernetes-version "$version" "$example"
python3 - "$example" <<'PY'
import sys
import yaml

docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(sys.argv[1])) if d}

def check(ok, what):
    if not ok:
        sys.exit("validate-k8s: node-logs example: " + what)

check(("Deployment", "fanfold-worker") in docs, "the base is included")
spec = docs[("DaemonSet", "fanfold-node-worker")]["spec"]["template"]["spec"]
c = spec["containers"][0]
env = {e["name"]: e for e in c["env"]}
check(env["FANFOLD_WORKER_NAME"].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
      == "spec.nodeName", "each node worker is named after its node")
check(env["FANFOLD_LOCAL_ROOTS"].get("value") == "/var/log", "it offers /var/log")
ref = env["FANFOLD_TOKEN"]["valueFrom"]["secretKeyRef"]
check(ref["name"] == "fanfold-credentials" and not ref.get("optional"), "it requires its token")
mounts = {m["name"]: m for m in c["volumeMounts"]}
volumes = {v["name"]: v for v in spec["volumes"]}
check(mounts["node-logs"]["mountPath"] == "/var/log" and mounts["node-logs"].get("readOnly"),
      "the node's logs are mounted read-only")
check(volumes["node-logs"]["hostPath"]["path"] == "/var/log", "from the node's /var/log")
check(spec["securityContext"].get("runAsNonRoot") and
      c["securityContext"].get("readOnlyRootFilesystem"), "it runs unprivileged, read-only")
print("validate-k8s: node-logs example valid: a worker per node offering its /var/log read-only")
PY
