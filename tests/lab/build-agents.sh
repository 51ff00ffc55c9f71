#!/usr/bin/env bash
# Builds the OpenTelemetry agent images in the OpenTelemetry Operator's autoinstrumentation
# layout, from the package registries (PyPI, npm, Maven Central), without a container registry:
#
#   obs-lab/autoinstrumentation-python:<distro>    /autoinstrumentation (pip --target tree)
#   obs-lab/autoinstrumentation-nodejs:<version>   /autoinstrumentation/{package.json,node_modules,autoinstrumentation.js}
#   obs-lab/autoinstrumentation-java:<version>     /autoinstrumentation/javaagent.jar, /javaagent.jar
#
#   tests/lab/build-agents.sh [python|nodejs|java]…   (default: all three)
#
# Each image carries the hash of its pinned inputs (compose/agents/<lang>/ + base image); when
# it is current, nothing is installed or built. Host installs are cached under
# $OBS_STACK_CACHE/agents/<lang>/<hash>/ (default ~/.cache/obs-stack).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/lab/lib.sh disable=SC1091
. "$here/lib.sh"

agents="$repo/compose/agents"
cache=${OBS_STACK_CACHE:-$HOME/.cache/obs-stack}/agents
PY_VERSION=3.11   # CPython minor of the target containers (Debian bookworm python3.11)

# Pinned versions, read from the pinned inputs themselves.
python_version() { sed -nE 's/^opentelemetry-distro==([^ ]+).*/\1/p' "$agents/python/requirements.txt"; }
nodejs_version() {
  sed -nE 's/.*"@opentelemetry\/auto-instrumentations-node": *"([^"]+)".*/\1/p' "$agents/nodejs/package.json"
}
java_version() { tr -d ' \n' <"$agents/java/version.txt"; }

# stage LANG HASH: prints a fresh staging dir for an install (removes a stale partial one).
stage_dir() {
  local d="$cache/$1/$2"
  if [ ! -f "$d/.complete" ]; then rm -rf "$d"; fi
  mkdir -p "$d/ctx"
  printf '%s' "$d"
}

# finish CTX: make the agent tree world-readable (the target app may run as any uid) and
# drop the Dockerfile into the build context.
finish_ctx() {
  local ctx=$1 lang=$2
  chmod -R go+rX "$ctx/autoinstrumentation"
  cp "$agents/$lang/Dockerfile" "$ctx/Dockerfile"
}

build_python() {
  local version image hash d ctx start
  version=$(python_version)
  image=obs-lab/autoinstrumentation-python:$version
  hash=$(lab_hash_dir "$agents/python" "python=$PY_VERSION" "base=$(lab_base_id)")
  if [ "$(lab_image_hash "$image")" = "$hash" ]; then lab_log "$image is up to date"; return 0; fi
  d=$(stage_dir python "$hash"); ctx="$d/ctx"
  if [ ! -f "$d/.complete" ]; then
    start=$(date +%s)
    lab_log "pip install --target (CPython $PY_VERSION wheels) for $image"
    rm -rf "$ctx/autoinstrumentation"
    # --python-version + --only-binary: wheels for CPython 3.11 on this (glibc, x86_64)
    # platform, whatever the host interpreter; constraints.txt pins the transitive set.
    python3 -m pip install -q --disable-pip-version-check --no-input --no-compile \
      --target "$ctx/autoinstrumentation" --python-version "$PY_VERSION" --only-binary=:all: \
      -r "$agents/python/requirements.txt" -c "$agents/python/constraints.txt" >"$d/pip.log" 2>&1 \
      || { tail -n 30 "$d/pip.log" >&2; lab_log "pip install failed"; return 1; }
    # Console scripts carry the host interpreter's shebang: useless in a container.
    rm -rf "$ctx/autoinstrumentation/bin"
    test -f "$ctx/autoinstrumentation/opentelemetry/instrumentation/auto_instrumentation/sitecustomize.py"
    # Byte-code that stays valid after `cp -r` (no mtime check) in a read-only mount, where
    # Python could not write its own cache: faster start-up for every instrumented process.
    if python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash "$ctx/autoinstrumentation" >/dev/null
    fi
    printf '%s\n' "$version" >"$ctx/autoinstrumentation/VERSION"
    touch "$d/.complete"
    lab_log "python agent installed in $(( $(date +%s) - start ))s"
  fi
  finish_ctx "$ctx" python
  lab_build_cached "$image" "$ctx" "$hash" --build-arg "BASE_IMAGE=$LAB_BASE_IMAGE"
}

build_nodejs() {
  local version image hash d ctx start tree
  version=$(nodejs_version)
  image=obs-lab/autoinstrumentation-nodejs:$version
  hash=$(lab_hash_dir "$agents/nodejs" "base=$(lab_base_id)")
  if [ "$(lab_image_hash "$image")" = "$hash" ]; then lab_log "$image is up to date"; return 0; fi
  d=$(stage_dir nodejs "$hash"); ctx="$d/ctx"; tree="$ctx/autoinstrumentation"
  if [ ! -f "$d/.complete" ]; then
    start=$(date +%s)
    lab_log "npm ci --omit=dev for $image"
    rm -rf "$tree"; mkdir -p "$tree"
    cp "$agents/nodejs/package.json" "$agents/nodejs/package-lock.json" "$tree/"
    # Pure JavaScript packages; no install scripts are needed (nor run).
    (cd "$tree" && npm ci --omit=dev --no-audit --no-fund --ignore-scripts --loglevel=error) \
      >"$d/npm.log" 2>&1 || { tail -n 30 "$d/npm.log" >&2; lab_log "npm ci failed"; return 1; }
    cp "$agents/nodejs/autoinstrumentation.js" "$tree/"
    test -f "$tree/node_modules/@opentelemetry/auto-instrumentations-node/build/src/register.js"
    printf '%s\n' "$version" >"$tree/VERSION"
    touch "$d/.complete"
    lab_log "nodejs agent installed in $(( $(date +%s) - start ))s"
  fi
  finish_ctx "$ctx" nodejs
  lab_build_cached "$image" "$ctx" "$hash" --build-arg "BASE_IMAGE=$LAB_BASE_IMAGE"
}

build_java() {
  local version image hash d ctx start
  version=$(java_version)
  image=obs-lab/autoinstrumentation-java:$version
  hash=$(lab_hash_dir "$agents/java" "base=$(lab_base_id)")
  if [ "$(lab_image_hash "$image")" = "$hash" ]; then lab_log "$image is up to date"; return 0; fi
  d=$(stage_dir java "$hash"); ctx="$d/ctx"
  if [ ! -f "$d/.complete" ]; then
    start=$(date +%s)
    lab_log "mvn dependency:copy io.opentelemetry.javaagent:opentelemetry-javaagent:$version"
    rm -rf "$ctx/autoinstrumentation" "$d/mvn"; mkdir -p "$ctx/autoinstrumentation" "$d/mvn"
    (cd "$d/mvn" && mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
        "-Dartifact=io.opentelemetry.javaagent:opentelemetry-javaagent:$version:jar" \
        -DoutputDirectory="$d/mvn" -Dmdep.stripVersion=true) >"$d/mvn.log" 2>&1 \
      || { tail -n 30 "$d/mvn.log" >&2; lab_log "mvn dependency:copy failed"; return 1; }
    mv "$d/mvn/opentelemetry-javaagent.jar" "$ctx/autoinstrumentation/javaagent.jar"
    rm -rf "$d/mvn"
    unzip -p "$ctx/autoinstrumentation/javaagent.jar" META-INF/MANIFEST.MF | grep -q '^Premain-Class:' \
      || { lab_log "javaagent.jar has no Premain-Class"; return 1; }
    printf '%s\n' "$version" >"$ctx/autoinstrumentation/VERSION"
    touch "$d/.complete"
    lab_log "java agent fetched in $(( $(date +%s) - start ))s"
  fi
  finish_ctx "$ctx" java
  lab_build_cached "$image" "$ctx" "$hash" --build-arg "BASE_IMAGE=$LAB_BASE_IMAGE"
}

langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(python nodejs java)
for lang in "${langs[@]}"; do
  case $lang in
    python|nodejs|java) "build_$lang" ;;
    *) lab_log "unknown agent: $lang (python|nodejs|java)"; exit 2 ;;
  esac
done
