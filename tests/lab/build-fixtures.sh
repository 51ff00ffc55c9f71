#!/usr/bin/env bash
# Builds the fixture app images obs-lab/fixture-<name>:latest from tests/fixtures/apps/<name>/,
# shared runtime bases first (obs-lab/python:3.11, obs-lab/node:20, obs-lab/jre:17).
#
#   tests/lab/build-fixtures.sh            # every fixture
#   tests/lab/build-fixtures.sh py-flask   # only the named ones (and the bases they need)
#
# Dependencies are installed on the host into <fixture>/build/ by the fixture's prepare.sh
# (pip --target, npm ci, mvn package, go build) and copied in: nothing is pulled at run time.
# Cached: each image carries a hash of its sources + Dockerfile + base image id; when it
# matches, prepare.sh and docker build are both skipped. Fails (non-zero) when any fixture fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
APPS=$ROOT/tests/fixtures/apps
CACHE=$ROOT/.lab-cache/bases
# shellcheck source=lib.sh
. "$ROOT/tests/lab/lib.sh"

# Host caches keep cold builds fast (pip, npm, Maven, Go all use their default caches).
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------------------------
# Shared runtime bases. Each is a Dockerfile written here; the context lives in .lab-cache/.

base_dockerfile() {
  case $1 in
    python) cat <<'EOF'
FROM obs-lab/base:bookworm
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && ln -s /usr/bin/python3 /usr/local/bin/python
ENV PYTHON_VERSION=3.11.2 PYTHONUNBUFFERED=1
CMD ["python3"]
EOF
      ;;
    node) cat <<'EOF'
FROM obs-lab/base:bookworm
ARG NODE_VERSION
COPY node /usr/local/bin/node
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && node --version
ENV NODE_VERSION=${NODE_VERSION}
CMD ["node"]
EOF
      ;;
    jre) cat <<'EOF'
FROM obs-lab/base:bookworm
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && java -version
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 JAVA_VERSION=17
CMD ["java", "-version"]
EOF
      ;;
  esac
}

base_image() {
  case $1 in
    python) echo obs-lab/python:3.11 ;;
    node) echo obs-lab/node:20 ;;
    jre) echo obs-lab/jre:17 ;;
  esac
}

build_base() {
  local kind=$1 image ctx hash extra=() t0
  t0=$(now)
  image=$(base_image "$kind")
  ctx=$CACHE/$kind
  mkdir -p "$ctx"
  base_dockerfile "$kind" >"$ctx/Dockerfile"
  local inputs="$kind $(sha256sum <"$ctx/Dockerfile" | cut -c1-16) $(lab_base_id)"
  if [ "$kind" = node ]; then
    local node_bin node_version
    node_bin=$(command -v node) || { lab_log "node is not installed on the host"; return 1; }
    node_version=$(node --version | sed 's/^v//')
    case $node_version in 20.*) ;; *) lab_log "host node is $node_version, need 20.x"; return 1 ;; esac
    inputs="$inputs $node_version $(stat -c %s "$node_bin")"
    extra=(--build-arg "NODE_VERSION=$node_version")
  fi
  hash=$(printf '%s' "$inputs" | sha256sum | cut -c1-24)
  if [ "$(lab_image_hash "$image")" != "$hash" ]; then
    [ "$kind" = node ] && cp -f "$(readlink -f "$(command -v node)")" "$ctx/node"
    lab_build_cached "$image" "$ctx" "$hash" "${extra[@]}" || return 1
    rm -f "$ctx/node"
    printf '[lab] %-28s built in %ss\n' "$image" "$(elapsed "$t0")" >&2
  else
    printf '[lab] %-28s up to date\n' "$image" >&2
  fi
}

# ---------------------------------------------------------------------------------------------
# Fixtures.

# The image a fixture's Dockerfile starts FROM (first FROM line).
fixture_from() {
  awk 'toupper($1) == "FROM" { print $2; exit }' "$1/Dockerfile"
}

# Hash of a fixture's sources: every file except generated dependency trees (build/, vendor/,
# node_modules/, target/), plus the id of the image it starts from.
fixture_hash() {
  local dir=$1 from=$2 from_id=scratch
  if [ "$from" != scratch ]; then
    from_id=$(docker image inspect -f '{{.Id}}' "$from" 2>/dev/null) || {
      lab_log "$from (FROM of $(basename "$dir")) is missing"
      return 1
    }
  fi
  {
    (cd "$dir" && find . -type f \
      ! -path './build/*' ! -path './vendor/*' ! -path '*/node_modules/*' ! -path '*/target/*' \
      ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
      | LC_ALL=C sort -z | xargs -0 -r sha256sum)
    printf 'from %s\n' "$from_id"
  } | sha256sum | cut -c1-24
}

build_fixture() {
  local name=$1 dir=$APPS/$1 image="obs-lab/fixture-$1:latest" from hash t0
  t0=$(now)
  from=$(fixture_from "$dir")
  hash=$(fixture_hash "$dir" "$from") || return 1
  if [ "$(lab_image_hash "$image")" = "$hash" ]; then
    printf '[lab] %-28s up to date\n' "$name" >&2
    return 0
  fi
  if [ -x "$dir/prepare.sh" ]; then
    lab_log "$name: prepare.sh (host dependencies into build/)"
    local logf
    logf=$(mktemp)
    if ! (cd "$dir" && ./prepare.sh) >"$logf" 2>&1; then
      tail -n 40 "$logf" >&2
      rm -f "$logf"
      lab_log "$name: prepare.sh failed"
      return 1
    fi
    rm -f "$logf"
  fi
  lab_build_cached "$image" "$dir" "$hash" --label "io.obs-stack.fixture=$name" || return 1
  printf '[lab] %-28s built in %ss\n' "$name" "$(elapsed "$t0")" >&2
}

main() {
  local names=() failed=() t0
  t0=$(now)
  if [ $# -gt 0 ]; then
    names=("$@")
  else
    local d
    for d in "$APPS"/*/; do
      d=${d%/}
      [ -f "$d/Dockerfile" ] && names+=("$(basename "$d")")
    done
  fi
  [ "${#names[@]}" -gt 0 ] || { lab_log "no fixtures under $APPS"; exit 1; }
  local n
  for n in "${names[@]}"; do
    [ -f "$APPS/$n/Dockerfile" ] || { lab_log "no fixture named $n"; exit 1; }
  done
  docker image inspect "$LAB_BASE_IMAGE" >/dev/null 2>&1 \
    || { lab_log "$LAB_BASE_IMAGE is missing: run tests/lab/base-image.sh first"; exit 1; }

  # Bases the selected fixtures need, in a fixed order.
  local kind
  for kind in python node jre; do
    for n in "${names[@]}"; do
      if [ "$(fixture_from "$APPS/$n")" = "$(base_image "$kind")" ]; then
        build_base "$kind" || { lab_log "base $(base_image "$kind") failed"; exit 1; }
        break
      fi
    done
  done

  # Sequential on purpose: the CPU is shared.
  for n in "${names[@]}"; do
    build_fixture "$n" || failed+=("$n")
  done
  lab_log "fixtures done in $(elapsed "$t0")s (${#names[@]} fixtures, ${#failed[@]} failed)"
  if [ "${#failed[@]}" -gt 0 ]; then
    lab_log "FAILED: ${failed[*]}"
    exit 1
  fi
}

main "$@"
