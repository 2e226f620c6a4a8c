#!/usr/bin/env bash
# Builds fanfold's container image (one image, all three binaries) with nothing pulled:
# static binaries are compiled here, then copied into a `FROM scratch` image. Also builds the
# example S3 server's image ($FANFOLD_S3_IMAGE or fanfold-s3:dev) for the compose
# walkthrough's `objects` profile.
#
#   deploy/build-image.sh [TAG]        # TAG defaults to $FANFOLD_IMAGE or fanfold:dev
#
# The static build uses its own target directory (target/image) so it never waits on, or
# invalidates, the normal debug build. Re-run the script to refresh a stale tag.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-${FANFOLD_IMAGE:-fanfold:dev}}"
s3_tag="${FANFOLD_S3_IMAGE:-fanfold-s3:dev}"
target="x86_64-unknown-linux-gnu"
target_dir="${FANFOLD_IMAGE_TARGET_DIR:-$PWD/target/image}"

# crt-static gives static-pie binaries; with --target, build scripts and proc macros stay
# dynamic. The getrandom cfg reads randomness from the getrandom syscall, not /dev/urandom.
# Symbols are stripped: the image is for running, not debugging.
RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
CARGO_PROFILE_RELEASE_DEBUG=false \
CARGO_PROFILE_RELEASE_STRIP=symbols \
CARGO_TARGET_DIR="$target_dir" \
  nice -n 10 cargo build --release --locked --target "$target" \
    -p fanfold -p fanfold-bench --bin coordinator --bin worker --bin submit-job --bin bench-s3

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin" "$context/state"
for bin in coordinator worker submit-job; do
  cp "$target_dir/$target/release/$bin" "$context/bin/"
done
cp deploy/Dockerfile "$context/Dockerfile"

# The classic builder: it needs no BuildKit and pulls nothing for `FROM scratch`.
DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$context" >/dev/null
# The binaries must run in the empty image, as the unprivileged user.
check="fanfold-build-check-$$"
user="$(docker run --rm --name "$check" "$tag" coordinator --version >/dev/null &&
  docker image inspect --format '{{.Config.User}}' "$tag")"
[ "$user" = "65532:65532" ] || { echo "build-image: $tag runs as '$user'" >&2; exit 1; }
echo "built $tag ($(docker image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec-i)B)"

# The example S3 server: its static binary and an empty /buckets it may write beneath.
s3_context="$(mktemp -d)"
trap 'rm -rf "$context" "$s3_context"' EXIT
mkdir -p "$s3_context/bin" "$s3_context/buckets"
cp "$target_dir/$target/release/bench-s3" "$s3_context/bin/"
cp deploy/s3.Dockerfile "$s3_context/Dockerfile"
DOCKER_BUILDKIT=0 docker build --quiet --tag "$s3_tag" "$s3_context" >/dev/null
docker run --rm "$s3_tag" bench-s3 --help >/dev/null
echo "built $s3_tag ($(docker image inspect --format '{{.Size}}' "$s3_tag" | numfmt --to=iec-i)B)"
