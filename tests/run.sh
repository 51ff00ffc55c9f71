#!/usr/bin/env bash
# The lab, in one command (the README's test command; .ci/run calls exactly this):
#   1. a running Docker engine (installs Debian's docker.io and starts dockerd when root),
#   2. host tools the tests use (shellcheck, promtool, amtool, wrk),
#   3. the registry-free base image (debootstrap + docker import),
#   4. fixture apps, OpenTelemetry agents, the collector (ocb) and stack images — all cached,
#   5. lint (rustfmt, clippy) and every test, with the Docker tests enabled.
# Safe to re-run: unchanged images are not rebuilt. OBS_STACK_SKIP_LINT=1 skips step 5's lint.
set -euo pipefail
cd "$(dirname "$0")/.."

T0=$(date +%s)
step() {
  local name=$1; shift
  local t
  t=$(date +%s)
  printf '\n== %s\n' "$name" >&2
  "$@"
  printf '== %s: %ss\n' "$name" "$(( $(date +%s) - t ))" >&2
}

optional() { # runs a lab script when it exists (it arrives with its feature)
  if [ -x "$1" ]; then "$@"; else printf '[lab] %s not present, skipped\n' "$1" >&2; fi
}

main() {
  step "docker engine" tests/lab/ensure-docker.sh
  step "host tools" tests/lab/ensure-tools.sh
  step "base image" tests/lab/base-image.sh
  step "fixtures" optional tests/lab/build-fixtures.sh
  step "agents" optional tests/lab/build-agents.sh
  step "collector" optional tests/lab/build-collector.sh
  step "stack images" optional tests/lab/build-stack-images.sh
  if [ "${OBS_STACK_SKIP_LINT:-0}" != 1 ]; then
    step "rustfmt" cargo fmt --check
    step "clippy" cargo clippy --all-targets --quiet -- -D warnings
  fi
  export OBS_STACK_DOCKER_TESTS=1
  step "tests" cargo test --all-targets -- --test-threads="${OBS_STACK_TEST_THREADS:-2}"
  printf '\nlab: all steps passed in %ss\n' "$(( $(date +%s) - T0 ))" >&2
}

main "$@"
