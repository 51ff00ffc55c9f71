#!/usr/bin/env bash
# Shared helpers for the lab scripts (source it). Images are cached by a label holding a hash
# of their inputs: an unchanged fixture, agent or collector is never rebuilt.

lab_log() { printf '[lab] %s\n' "$*" >&2; }

# Hash of a directory's files (names, modes and contents), plus any extra strings.
lab_hash_dir() {
  local dir=$1; shift
  {
    (cd "$dir" && find . -type f ! -path '*/node_modules/*' ! -path '*/target/*' ! -path '*/.venv/*' ! -path '*/__pycache__/*' -print0 \
      | LC_ALL=C sort -z | xargs -0 -r sha256sum)
    printf '%s\n' "$@"
  } | sha256sum | cut -c1-24
}

# The recorded input hash of an image, or nothing when the image is absent.
lab_image_hash() {
  docker image inspect -f '{{index .Config.Labels "io.obs-stack.inputs"}}' "$1" 2>/dev/null || true
}

# lab_build_cached IMAGE CONTEXT HASH [docker build args…]
# Builds CONTEXT into IMAGE (legacy builder: no registry, local FROM only) unless IMAGE
# already carries HASH. Returns 0 when it built or was up to date.
lab_build_cached() {
  local image=$1 context=$2 hash=$3; shift 3
  if [ "$(lab_image_hash "$image")" = "$hash" ]; then
    lab_log "$image is up to date"
    return 0
  fi
  lab_log "building $image"
  local logf
  logf=$(mktemp)
  if ! DOCKER_BUILDKIT=0 docker build --pull=false --label "io.obs-stack.inputs=$hash" -t "$image" "$@" "$context" >"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    rm -f "$logf"
    lab_log "building $image failed"
    return 1
  fi
  rm -f "$logf"
}

# The base image every lab image starts from.
LAB_BASE_IMAGE=${OBS_LAB_BASE_IMAGE:-obs-lab/base:bookworm}
lab_base_id() { docker image inspect -f '{{.Id}}' "$LAB_BASE_IMAGE"; }
