#!/usr/bin/env bash
# obs-stack serve figures (prints, asserts nothing):
#   1. idle RSS of `obs-stack serve` after IDLE seconds with an empty data dir;
#   2. ingest: SPANS spans over OTLP/HTTP protobuf (examples/serve_bench.rs, CONC concurrent
#      requests of BATCH spans) into serve, then the same load into the lab collector
#      (obs-lab/otelcol: OTLP in, memory_limiter, batch, file exporter — receive and persist,
#      nothing queryable) — spans/s and peak RSS of each;
#   3. queries at QUERY_SPANS stored spans: p50/p95 of services, routes, series, traces
#      (by service, errors only), trace by id and error groups (N each).
#
#   bench/backend.sh            all three (the collector part needs the lab image)
#   bench/backend.sh idle|ingest|query
# Env: SPANS (200000), QUERY_SPANS (1000000), CONC (4), BATCH (600), N (100), IDLE (10),
#      OBS_STACK (binary; default target/release/obs-stack), BUILD=0 to skip the cargo builds.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
what=${1:-all}
SPANS=${SPANS:-200000}
QUERY_SPANS=${QUERY_SPANS:-1000000}
CONC=${CONC:-4}
BATCH=${BATCH:-600}
N=${N:-100}
IDLE=${IDLE:-10}
COLLECTOR_IMAGE=${COLLECTOR_IMAGE:-obs-lab/otelcol:0.159.0}
bin=${OBS_STACK:-$repo/target/release/obs-stack}
if [ "${BUILD:-1}" = 1 ]; then
  (cd "$repo" && cargo build --release --quiet && cargo build --release --quiet --example serve_bench)
fi
load=$repo/target/release/examples/serve_bench
work=$(mktemp -d)
pids=()
col=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$col" ] && docker rm -f "$col" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
hwm_mib() { awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# start_serve DIR → sets SERVE_PID, HTTP, API, KEY, TOKEN
start_serve() {
  local dir=$1
  KEY=$("$bin" serve project add bench --data-dir "$dir")
  HTTP=$(free_port); API=$(free_port); local grpc; grpc=$(free_port)
  "$bin" serve --data-dir "$dir" --otlp-grpc "127.0.0.1:$grpc" --otlp-http "127.0.0.1:$HTTP" \
    --api "127.0.0.1:$API" 2>"$dir.log" &
  SERVE_PID=$!
  pids+=("$SERVE_PID")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$API/healthz" >/dev/null && break; sleep 0.1; done
  TOKEN=$("$bin" serve token --data-dir "$dir")
}

stop_serve() { kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; }

bench_idle() {
  start_serve "$work/idle"
  sleep "$IDLE"
  echo "idle: rss_mib=$(rss_mib "$SERVE_PID") (after ${IDLE}s, empty data dir; target <= 30)"
  stop_serve
}

bench_ingest() {
  start_serve "$work/ingest"
  echo "ingest serve: $("$load" load "http://127.0.0.1:$HTTP/v1/traces" "$KEY" "$SPANS" "$CONC" "$BATCH")" \
    "peak_rss_mib=$(hwm_mib "$SERVE_PID") db=$(du -sh "$work/ingest" | cut -f1)"
  stop_serve
  if ! docker image inspect "$COLLECTOR_IMAGE" >/dev/null 2>&1; then
    echo "ingest collector: skipped ($COLLECTOR_IMAGE not built; tests/run.sh builds it)"
    return
  fi
  mkdir -p "$work/col" && chmod 777 "$work/col"
  cat >"$work/col/config.yaml" <<'YAML'
receivers:
  otlp:
    protocols:
      http:
        endpoint: 0.0.0.0:4318
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 256
  batch: {}
exporters:
  file:
    path: /data/otel.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [file]
YAML
  col=obs-bench-col-$$
  local port; port=$(free_port)
  docker run -d --name "$col" --label io.obs-stack.test=bench -p "127.0.0.1:$port:4318" \
    -v "$work/col:/data" "$COLLECTOR_IMAGE" --config /data/config.yaml >/dev/null
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
  local peak=0 out
  ( while docker inspect "$col" >/dev/null 2>&1; do
      docker stats --no-stream --format '{{.MemUsage}}' "$col" 2>/dev/null | awk '{print $1}' >>"$work/col.mem"
      sleep 1
    done ) &
  local sampler=$!
  out=$("$load" load "http://127.0.0.1:$port/v1/traces" x "$SPANS" "$CONC" "$BATCH")
  kill "$sampler" 2>/dev/null || true
  peak=$(sed 's/MiB//;s/GiB/*1024/' "$work/col.mem" | bc 2>/dev/null | sort -n | tail -1 || echo "?")
  echo "ingest collector: $out peak_mem_mib=${peak} (docker stats, sampled each second)"
  docker rm -f "$col" >/dev/null; col=""
}

bench_query() {
  start_serve "$work/query"
  echo "query: loading $QUERY_SPANS spans: $("$load" load "http://127.0.0.1:$HTTP/v1/traces" "$KEY" "$QUERY_SPANS" "$CONC" "$BATCH")"
  "$load" query "http://127.0.0.1:$API" "$TOKEN" bench "$N" | sed 's/^/query: /'
  echo "query: rss_mib=$(rss_mib "$SERVE_PID") peak_rss_mib=$(hwm_mib "$SERVE_PID") db=$(du -sh "$work/query" | cut -f1)"
  stop_serve
}

case $what in
  idle) bench_idle ;;
  ingest) bench_ingest ;;
  query) bench_query ;;
  all) bench_idle; bench_ingest; bench_query ;;
  *) echo "usage: $0 [all|idle|ingest|query]" >&2; exit 2 ;;
esac
