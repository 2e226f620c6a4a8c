#!/usr/bin/env bash
# Checks the README's compose walkthrough end to end: `docker-compose up`, then `submit-job`
# from the host, and compares the word count of the samples with Python's; checks the workers
# read their chunks from the shared volume; then restarts the coordinator and fetches the
# result again from its state volume; then runs the count partitioned (--reducers 3), the
# workers fetching map outputs from each other, and compares; last, checks the HTTP port's
# /healthz, /api/v1/jobs and /metrics from the host, and that its compose health check passes;
# last, a job over object storage (the `objects` profile's S3 server), its result written to
# the store. It runs with fresh tokens (deploy/compose-tokens.sh): a client without one is
# refused.
#
#   deploy/compose-smoke.sh [SUBMIT_JOB]    # default: the image build's static submit-job
#
# Uses its own project name and free host ports, and removes everything it created.
set -euo pipefail
cd "$(dirname "$0")/.."

submit_job="${1:-target/image/x86_64-unknown-linux-gnu/release/submit-job}"
project="fanfold-test-compose-$$"
# Two distinct free ports, for gRPC and HTTP: both sockets are held until both are picked.
read -r FANFOLD_PORT FANFOLD_HTTP_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
export FANFOLD_PORT FANFOLD_HTTP_PORT
if command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  compose=(docker compose)
fi
out="$(mktemp -d)"
# Fresh tokens: the coordinator's lines and the workers' token for compose, the admin token
# (FANFOLD_TOKEN) for submit-job here.
deploy/compose-tokens.sh "$out/tokens.env" >/dev/null
# The example S3 server's endpoint and keys (fresh ones), for the coordinator and the workers;
# its buckets are directories here: `samples` (a copy of the sample text) and `results`.
mkdir -p "$out/buckets/results"
cp -r samples "$out/buckets/samples"
chmod -R a+rwX "$out/buckets"
s3_secret="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
cat >>"$out/tokens.env" <<EOF
AWS_ACCESS_KEY_ID=smoke-$$
AWS_SECRET_ACCESS_KEY=$s3_secret
AWS_ENDPOINT_URL=http://objects:9000
AWS_REGION=us-east-1
AWS_ALLOW_HTTP=true
FANFOLD_DATA_ROOTS=/data,s3://samples/
FANFOLD_BUCKETS_DIR=$out/buckets
EOF
set -a
# shellcheck disable=SC1091
. "$out/tokens.env"
set +a
compose+=(--env-file "$out/tokens.env" -f deploy/docker-compose.yml -p "$project" --profile objects)

cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then "${compose[@]}" logs --no-color --tail 40 >&2 || true; fi
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$out"
  exit "$status"
}
trap cleanup EXIT

"${compose[@]}" up -d --quiet-pull
# Workers attach within a second or two; a job submitted before they do simply waits.
"$submit_job" --coordinator "127.0.0.1:$FANFOLD_PORT" run /data/samples --chunk-size 16KiB \
  --quiet --output "$out/fanfold.tsv"
python3 - "$out/fanfold.tsv" samples <<'PY'
import collections, pathlib, sys
expected = collections.Counter()
for path in sorted(pathlib.Path(sys.argv[2]).rglob("*")):
    if path.is_file() and not any(p.startswith((".", "_")) for p in path.parts):
        expected.update(path.read_bytes().split())
got = {}
for line in open(sys.argv[1], "rb"):
    key, _, value = line.rstrip(b"\n").rpartition(b"\t")
    got[key] = int(value)
if got != dict(expected):
    sys.exit(f"compose-smoke: result differs from Python's count ({len(got)} vs {len(expected)} words)")
print(f"compose-smoke: {len(got)} words, same as Python's count")
PY

# The workers see the samples at the coordinator's path: they read their chunks themselves.
coordinator_log="$("${compose[@]}" logs --no-color coordinator)"
if ! grep -q "shared_storage=true" <<<"$coordinator_log" ||
  grep -q "cannot read shared storage" <<<"$coordinator_log"; then
  echo "compose-smoke: workers did not read their chunks from the shared volume" >&2
  exit 1
fi
echo "compose-smoke: workers read their chunks from the shared volume"

# Without a token, or with another, nothing is served.
if FANFOLD_TOKEN= "$submit_job" --coordinator "127.0.0.1:$FANFOLD_PORT" list >/dev/null 2>&1 ||
  FANFOLD_TOKEN=ff_wrong "$submit_job" --coordinator "127.0.0.1:$FANFOLD_PORT" list >/dev/null 2>&1; then
  echo "compose-smoke: the coordinator served a client without a valid token" >&2
  exit 1
fi
echo "compose-smoke: a client without a valid token is refused"

# The state directory is on the named volume: a restarted coordinator still has the result.
job="$("$submit_job" --coordinator "127.0.0.1:$FANFOLD_PORT" list | awk 'NR == 2 { print $1 }')"
"${compose[@]}" restart coordinator
for _ in $(seq 50); do
  "$submit_job" --coordinator "127.0.0.1:$FANFOLD_PORT" list >/dev/null 2>&1 && break
  sleep 0.2
done
"$submit_job" --coordinator "127.0.0.1:$FANFOLD_PORT" result "$job" --output "$out/again.tsv"
cmp "$out/fanfold.tsv" "$out/again.tsv"
echo "compose-smoke: job $job's result survived a coordinator restart"

# A partitioned job: the workers keep their map outputs on their tmpfs and fetch them from
# each other over the compose network; the result equals the count checked above.
"$submit_job" --coordinator "127.0.0.1:$FANFOLD_PORT" run /data/samples --chunk-size 4KiB \
  --reducers 3 --quiet --output "$out/partitioned.tsv"
LC_ALL=C sort "$out/partitioned.tsv" >"$out/partitioned.sorted"
LC_ALL=C sort "$out/fanfold.tsv" >"$out/fanfold.sorted"
cmp "$out/fanfold.sorted" "$out/partitioned.sorted"
echo "compose-smoke: a job reduced on the workers in 3 partitions gives the same count"

# The HTTP port, from the host (python3, not curl, which may be missing): /healthz, the jobs
# this script ran in /api/v1/jobs, and the succeeded jobs in /metrics.
listed="$("$submit_job" --coordinator "127.0.0.1:$FANFOLD_PORT" list)"
mapfile -t jobs < <(awk 'NR > 1 { print $1 }' <<<"$listed")
python3 - "http://127.0.0.1:$FANFOLD_HTTP_PORT" "$job" "${jobs[@]}" <<'PY'
import json, re, sys, urllib.request
base, first, ran = sys.argv[1], sys.argv[2], set(sys.argv[3:])

import os, urllib.error

def get(path, token=os.environ["FANFOLD_TOKEN"]):
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()

if get("/healthz") != "ok\n":
    sys.exit("compose-smoke: /healthz did not answer ok")
try:
    get("/api/v1/jobs", token="ff_wrong")
    sys.exit("compose-smoke: /api/v1/jobs answered a wrong token")
except urllib.error.HTTPError as refused:
    if refused.code != 401:
        sys.exit(f"compose-smoke: /api/v1/jobs answered a wrong token with {refused.code}")
jobs = json.loads(get("/api/v1/jobs"))
listed = {job["job_id"]: job["state"] for job in jobs}
if len(ran) != 2 or first not in ran or set(listed) != ran:
    sys.exit(f"compose-smoke: /api/v1/jobs lists {sorted(listed)}, the script ran {sorted(ran)}")
if set(listed.values()) != {"succeeded"}:
    sys.exit(f"compose-smoke: /api/v1/jobs states: {listed}")
found = re.search(r'^fanfold_jobs\{state="succeeded"\} (\S+)$', get("/metrics"), re.M)
if not found or float(found[1]) < len(ran):
    sys.exit(f"compose-smoke: /metrics has fanfold_jobs{{state=\"succeeded\"}} "
             f"{found[1] if found else 'missing'}, expected at least {len(ran)}")
print(f"compose-smoke: the HTTP port answers: /healthz ok, {len(ran)} jobs in /api/v1/jobs "
      f"and in /metrics")
PY

# The compose health check (`submit-job probe .../readyz` inside the container, every 10 s)
# marks the coordinator healthy.
coordinator_id="$("${compose[@]}" ps -q coordinator)"
for _ in $(seq 1 60); do
  health="$(docker inspect --format '{{.State.Health.Status}}' "$coordinator_id")"
  [ "$health" = healthy ] && break
  sleep 1
done
if [ "$health" != healthy ]; then
  echo "compose-smoke: the coordinator's health check says $health" >&2
  exit 1
fi
echo "compose-smoke: the coordinator's health check (probe of /readyz) says healthy"

# Object storage: bucket `samples` of the example S3 server holds the sample text. The
# workers read their chunks' byte ranges from the store themselves (the coordinator's count
# of chunk bytes it sent stays put), and the result goes to bucket `results`, _SUCCESS last.
sent() {
  python3 - "http://127.0.0.1:$FANFOLD_HTTP_PORT" <<'PY'
import os, re, sys, urllib.request
request = urllib.request.Request(sys.argv[1] + "/metrics",
                                 headers={"Authorization": f"Bearer {os.environ['FANFOLD_TOKEN']}"})
text = urllib.request.urlopen(request, timeout=10).read().decode()
print(re.search(r"^fanfold_chunk_bytes_sent_total (\S+)$", text, re.M)[1])
PY
}
before="$(sent)"
"$submit_job" --coordinator "127.0.0.1:$FANFOLD_PORT" run s3://samples/ --chunk-size 16KiB \
  --output-dir s3://results/words/ --quiet --output "$out/objects.tsv"
after="$(sent)"
LC_ALL=C sort "$out/objects.tsv" >"$out/objects.sorted"
cmp "$out/fanfold.sorted" "$out/objects.sorted"
if [ "$before" != "$after" ]; then
  echo "compose-smoke: the coordinator sent $before then $after chunk bytes for a job over objects" >&2
  exit 1
fi
[ -f "$out/buckets/results/words/_SUCCESS" ] || {
  echo "compose-smoke: no _SUCCESS in the results bucket" >&2
  exit 1
}
cat "$out"/buckets/results/words/part-* | LC_ALL=C sort | cmp - "$out/fanfold.sorted"
echo "compose-smoke: a job over s3://samples/ gives the same count, read by the workers from" \
  "the store, its parts and _SUCCESS in s3://results/words/"
