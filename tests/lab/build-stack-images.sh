#!/usr/bin/env bash
# Builds the images the generated obs-stack.yml needs and the lab cannot pull: Prometheus and
# Alertmanager from Debian packages, FROM the lab base image (compose/lab-images/*).
# Cached: an image whose inputs (Dockerfile + base image id) are unchanged is not rebuilt.
#
#   tests/lab/build-stack-images.sh        -> obs-lab/prometheus:2.42, obs-lab/alertmanager:0.25
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/lab/lib.sh disable=SC1091
. "$here/lib.sh"

PROMETHEUS_IMAGE=${OBS_LAB_PROMETHEUS_IMAGE:-obs-lab/prometheus:2.42}
ALERTMANAGER_IMAGE=${OBS_LAB_ALERTMANAGER_IMAGE:-obs-lab/alertmanager:0.25}

base=$(lab_base_id) || { lab_log "base image $LAB_BASE_IMAGE is missing (tests/lab/base-image.sh)"; exit 2; }

build() {
  local image=$1 dir=$2 hash
  hash=$(lab_hash_dir "$dir" "$base")
  lab_build_cached "$image" "$dir" "$hash" --build-arg "BASE_IMAGE=$LAB_BASE_IMAGE"
}

build "$PROMETHEUS_IMAGE" "$repo/compose/lab-images/prometheus"
build "$ALERTMANAGER_IMAGE" "$repo/compose/lab-images/alertmanager"
# Smoke: the binaries run and report the versions the tags promise.
docker run --rm "$PROMETHEUS_IMAGE" --version 2>&1 | head -1 >&2
docker run --rm "$ALERTMANAGER_IMAGE" --version 2>&1 | head -1 >&2
