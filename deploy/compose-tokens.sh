#!/usr/bin/env bash
# Writes fresh tokens for the compose file into an env file (default deploy/.env, mode 600),
# which docker-compose reads: the coordinator's tokens-file lines (hashes only), the workers'
# token, and an admin token for submit-job on this host.
#
#   deploy/compose-tokens.sh [FILE]
#   set -a; . deploy/.env; set +a        # FANFOLD_TOKEN for submit-job on the host
#
# The tokens come from `coordinator token new` in the image (FANFOLD_IMAGE, default
# fanfold:dev); they are printed nowhere.
set -euo pipefail
cd "$(dirname "$0")"
file="${1:-.env}"
image="${FANFOLD_IMAGE:-fanfold:dev}"

# `coordinator token new NAME ROLE` prints the token, then its line for the tokens file.
new_token() {
  docker run --rm --network none "$image" coordinator token new "$@"
}
mapfile -t fleet < <(new_token fleet worker)
mapfile -t admin < <(new_token admin admin)
if [ "${#fleet[@]}" -ne 2 ] || [ "${#admin[@]}" -ne 2 ]; then
  echo "compose-tokens: 'coordinator token new' did not print a token and a line" >&2
  exit 1
fi
umask 077
cat >"$file" <<ENV
# Written by deploy/compose-tokens.sh; keep it private.
FANFOLD_AUTH_TOKEN_LINES='${fleet[1]};${admin[1]}'
FANFOLD_WORKER_TOKEN=${fleet[0]}
FANFOLD_TOKEN=${admin[0]}
ENV
echo "compose-tokens: wrote $(cd "$(dirname "$file")" && pwd)/$(basename "$file")"
