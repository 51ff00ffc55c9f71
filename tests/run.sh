#!/usr/bin/env bash
# The lab, in one command (the README's test command; .ci/run calls exactly this):
#   1. a running Docker engine (installs Debian's docker.io and starts dockerd when root),
#   2. host tools the tests use (shellcheck, promtool, amtool, wrk),
#   3. the registry-free base image (debootstrap + docker import),
#   4. fixture apps, OpenTelemetry agents, the collector (ocb) and stack images — all cached,
#   5. lint (rustfmt, clippy) and every test, with the Docker tests enabled,
#   6. bounded fuzzing of the backend's OTLP decoding and error fingerprinting (nightly).
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

wait_for() { # pid log: waits for a background step and shows its log
  local rc=0
  wait "$1" || rc=$?
  cat "$2" >&2
  rm -f "$2"
  return "$rc"
}

clean_stale() { # leftovers of an earlier run that was killed before its guards ran
  docker ps -aq --filter "label=io.obs-stack.test" | xargs -r docker rm -f -v >/dev/null
  # compose networks of the lab's test projects (obsinit*, obsj*, obsup*, obsports*) too
  { docker network ls -q --filter "label=io.obs-stack.test"; docker network ls -q --filter "name=^obs-test-"
    docker network ls --format '{{.ID}} {{.Name}}' | awk '$2 ~ /^obs(init|j|up|ports)[0-9a-z]*[-_]/ {print $1}'; } \
    | sort -u | xargs -r docker network rm >/dev/null 2>&1
  return 0
}

main() {
  step "docker engine" tests/lab/ensure-docker.sh
  step "host tools" tests/lab/ensure-tools.sh
  step "stale test containers" clean_stale
  step "base image" tests/lab/base-image.sh
  # The collector (a long Go build on a cold machine) builds in the background while the
  # other images download and build; its log is shown if it fails.
  local collector_log collector_pid
  collector_log=$(mktemp)
  optional tests/lab/build-collector.sh >"$collector_log" 2>&1 &
  collector_pid=$!
  step "fixtures" optional tests/lab/build-fixtures.sh
  step "agents" optional tests/lab/build-agents.sh
  step "stack images" optional tests/lab/build-stack-images.sh
  step "collector" wait_for "$collector_pid" "$collector_log"
  if [ "${OBS_STACK_SKIP_LINT:-0}" != 1 ]; then
    step "rustfmt" cargo fmt --check
    step "clippy" cargo clippy --all-targets --quiet -- -D warnings
  fi
  export OBS_STACK_DOCKER_TESTS=1
  step "tests" cargo test --all-targets -- --test-threads="${OBS_STACK_TEST_THREADS:-2}"
  step "fuzz (bounded)" tests/lab/fuzz.sh
  printf '\nlab: all steps passed in %ss\n' "$(( $(date +%s) - T0 ))" >&2
}

main "$@"
