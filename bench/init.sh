#!/usr/bin/env bash
# obs-stack init figures:
#   1. time of `obs-stack init` on a generated 20-service compose file, detection excluded
#      (--static + --assume for every service), median of N runs, first run and re-run;
#   2. idle memory of the stack services that run in the lab (collector, Prometheus,
#      Alertmanager; Grafana/Tempo/Loki have no lab image), from `docker stats --no-stream`
#      after the stack has idled for IDLE seconds with the lab project attached.
#
#   bench/init.sh              both (needs the lab images: tests/run.sh builds them)
#   bench/init.sh time         only the init timing (no Docker needed)
# Env: RUNS (default 15), IDLE (default 60), OBS_STACK (binary; default target/release).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
what=${1:-all}
RUNS=${RUNS:-15}
IDLE=${IDLE:-60}
bin=${OBS_STACK:-$repo/target/release/obs-stack}
if [ ! -x "$bin" ]; then
  (cd "$repo" && cargo build --release --quiet)
fi
work=$(mktemp -d)
project=obsbench$$
cleanup() {
  if [ -f "$work/up" ]; then
    (cd "$work/stack" && COMPOSE_PROJECT_NAME=$project docker-compose -p "$project" -f docker-compose.yml \
      -f obs-stack.yml -f obs-stack.apps.yml down -t 2 >/dev/null 2>&1) || true
    # Not `down -v`: the obs-agent-* volumes are shared with `obs-stack inject`.
    docker volume ls --format '{{.Name}}' | grep "^${project}_" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now_ms() { date +%s%3N; }

bench_time() {
  local dir=$work/twenty langs=(python:flask node:express java:springboot python:django node:koa) assume=()
  mkdir -p "$dir"
  {
    echo "services:"
    for i in $(seq 1 20); do
      echo "  svc$i:"
      echo "    image: example/app$i:1.0"
      echo "    ports: [\"127.0.0.1::8080\"]"
      echo "    environment: {APP_ID: \"$i\"}"
    done
  } >"$dir/compose.yaml"
  for i in $(seq 1 20); do assume+=(--assume "svc$i=${langs[$((i % 5))]}"); done
  local first t0 t1 times=()
  t0=$(now_ms); "$bin" init --static -q -f "$dir/compose.yaml" "${assume[@]}" >/dev/null; t1=$(now_ms)
  first=$((t1 - t0))
  for _ in $(seq 1 "$RUNS"); do
    rm -rf "$dir/obs-stack" "$dir/.obs-stack" "$dir"/obs-stack*.yml
    t0=$(now_ms); "$bin" init --static -q -f "$dir/compose.yaml" "${assume[@]}" >/dev/null; t1=$(now_ms)
    times+=($((t1 - t0)))
  done
  local rerun=()
  for _ in $(seq 1 "$RUNS"); do
    t0=$(now_ms); "$bin" init --static -q -f "$dir/compose.yaml" "${assume[@]}" >/dev/null; t1=$(now_ms)
    rerun+=($((t1 - t0)))
  done
  echo "init, 20-service compose file, detection excluded ($RUNS runs):"
  echo "  first run ${first} ms; fresh writes median $(printf '%s\n' "${times[@]}" | median) ms;" \
       "idempotent re-run median $(printf '%s\n' "${rerun[@]}" | median) ms"
  echo "  files written: $(find "$dir/obs-stack" -type f | wc -l) + obs-stack.yml + obs-stack.apps.yml"
}

bench_memory() {
  local dir=$work/stack
  mkdir -p "$dir"
  cp "$repo/compose/lab-project/docker-compose.yml" "$dir/"
  "$repo/tests/lab/build-stack-images.sh" >/dev/null
  local py node java
  py=$(docker images obs-lab/autoinstrumentation-python --format '{{.Repository}}:{{.Tag}}' | head -1)
  node=$(docker images obs-lab/autoinstrumentation-nodejs --format '{{.Repository}}:{{.Tag}}' | head -1)
  java=$(docker images obs-lab/autoinstrumentation-java --format '{{.Repository}}:{{.Tag}}' | head -1)
  (cd "$dir" && COMPOSE_PROJECT_NAME=$project "$bin" init -q --disable grafana,tempo,loki \
     --assume shop=python:flask --assume api=node:express --assume billing=java:spring-boot --assume db=infra \
     --image collector=obs-lab/otelcol:0.159.0 --image prometheus=obs-lab/prometheus:2.42 \
     --image alertmanager=obs-lab/alertmanager:0.25 --image "agent-python=$py" --image "agent-node=$node" --image "agent-java=$java" \
     --collector-components <(docker run --rm --entrypoint /otelcol obs-lab/otelcol:0.159.0 components))
  touch "$work/up"
  (cd "$dir" && COMPOSE_PROJECT_NAME=$project docker-compose -p "$project" -f docker-compose.yml \
     -f obs-stack.yml -f obs-stack.apps.yml up -d >/dev/null 2>&1)
  echo "stack up; idling ${IDLE}s (apps instrumented, no traffic)…"
  sleep "$IDLE"
  echo "idle memory (docker stats --no-stream):"
  for svc in otel-collector prometheus alertmanager shop api billing db; do
    local id
    id=$(cd "$dir" && COMPOSE_PROJECT_NAME=$project docker-compose -p "$project" -f docker-compose.yml \
         -f obs-stack.yml -f obs-stack.apps.yml ps -q "$svc")
    printf '  %-15s %s\n' "$svc" "$(docker stats --no-stream --format '{{.MemUsage}}' "$id")"
  done
}

case $what in
  time) bench_time ;;
  memory) bench_memory ;;
  all) bench_time; bench_memory ;;
  *) echo "usage: $0 [all|time|memory]" >&2; exit 2 ;;
esac
