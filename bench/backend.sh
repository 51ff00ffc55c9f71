#!/usr/bin/env bash
# obs-stack serve figures:
#   1. idle RSS of `obs-stack serve` after IDLE seconds with an empty data dir;
#   2. ingest, side by side with the peer: the same load — SPANS spans over OTLP/HTTP protobuf
#      (examples/serve_bench.rs, CONC concurrent requests of BATCH spans, whole traces of 3
#      spans, every trace id unique) — into serve and into Jaeger v2 (JAEGER_VERSION, built
#      once from the Go module proxy into ~/.cache/obs-stack/jaeger-<version>) with in-memory
#      storage and with Badger (durable, in a temp dir). Per backend: spans/s, CPU-seconds per
#      100k spans (utime+stime of the process from /proc/PID/stat, before/after the load and
#      until everything acknowledged reached storage), peak RSS (VmHWM), and the spans and
#      traces actually stored, counted back (serve: rows in its database; Jaeger: its query API
#      /api/traces per service). Prints a table; EXITS NON-ZERO if a backend stored fewer spans
#      or traces than it acknowledged. Then, if the lab image exists, the lab collector
#      (obs-lab/otelcol: OTLP in, batch, file exporter — nothing queryable);
#   3. queries at QUERY_SPANS stored spans: p50/p95 of services, routes, series, traces
#      (by service, errors only), trace by id and error groups (N each).
#   Everything listens on 127.0.0.1 and sends nowhere else; Jaeger's own telemetry is read
#   from a loopback port only.
#
#   bench/backend.sh            all three (the collector part needs the lab image)
#   bench/backend.sh idle|ingest|query|collector
# Env: SPANS (200000), QUERY_SPANS (1000000), CONC (4), BATCH (600), N (100), IDLE (10),
#      BACKENDS ("serve jaeger-memory jaeger-badger"; the ingest table's rows),
#      JAEGER_VERSION (1.75.0), JAEGER (binary; default the cached build),
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
BACKENDS=${BACKENDS:-serve jaeger-memory jaeger-badger}
JAEGER_VERSION=${JAEGER_VERSION:-1.75.0}
jaeger=${JAEGER:-$HOME/.cache/obs-stack/jaeger-$JAEGER_VERSION/jaeger}
bin=${OBS_STACK:-$repo/target/release/obs-stack}
if [ "${BUILD:-1}" = 1 ]; then
  (cd "$repo" && cargo build --release --quiet && cargo build --release --quiet --example serve_bench)
fi
load=$repo/target/release/examples/serve_bench
clk_tck=$(getconf CLK_TCK)
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
# utime+stime of a process in clock ticks (fields 14 and 15; the name before them is in parens)
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# the value of KEY=... in a line of KEY=VALUE words
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

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

# Jaeger v2 from the Go module proxy: the module's go.mod has replace directives, so
# `go install …@version` refuses it; build inside a copy of the downloaded module instead.
build_jaeger() {
  [ -x "$jaeger" ] && return
  echo "building Jaeger $JAEGER_VERSION into $(dirname "$jaeger") (once; takes several minutes)" >&2
  local mod src
  mod=$(cd /tmp && go mod download -json "github.com/jaegertracing/jaeger@v$JAEGER_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  src=$(mktemp -d)
  cp -r "$mod/." "$src" && chmod -R u+w "$src"
  mkdir -p "$(dirname "$jaeger")"
  (cd "$src" && go build -buildvcs=false -trimpath -o "$jaeger.tmp" ./cmd/jaeger) && mv "$jaeger.tmp" "$jaeger"
  rm -rf "$src"
}

# jaeger_config DIR STORAGE(memory|badger) → DIR/config.yaml; sets J_HTTP J_QUERY J_METRICS
# The pipeline is Jaeger's own (cmd/jaeger/config.yaml): otlp → batch → jaeger_storage_exporter,
# less the receivers and extensions the load does not use; every port on 127.0.0.1.
jaeger_config() {
  local dir=$1 storage=$2 grpc_q store
  J_HTTP=$(free_port); J_QUERY=$(free_port); J_METRICS=$(free_port); grpc_q=$(free_port)
  mkdir -p "$dir"
  if [ "$storage" = badger ]; then
    mkdir -p "$dir/badger"
    store="badger:
          directories: {keys: $dir/badger, values: $dir/badger}
          ephemeral: false
          ttl: {spans: 48h}"
  else
    # max_traces bounds the store (oldest evicted); above the run's traces so none is evicted
    store="memory:
          max_traces: $((SPANS + 100000))"
  fi
  cat >"$dir/config.yaml" <<YAML
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: $J_METRICS
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: bench_store
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:$J_QUERY
    grpc:
      endpoint: 127.0.0.1:$grpc_q
  jaeger_storage:
    backends:
      bench_store:
        $store
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:$J_HTTP
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: bench_store
YAML
}

# Spans the storage exporter has handed to storage (Jaeger's own metric).
jaeger_sent() {
  curl -sf "http://127.0.0.1:$J_METRICS/metrics" 2>/dev/null |
    awk '/^otelcol_exporter_sent_spans/ {s += $NF} END {printf "%d", s}'
}

# Spans and traces stored for the load's five services, through the query API.
jaeger_count() {
  local t0_us=$1 end_us=$(( ($(date +%s) + 3600) * 1000000 ))
  for i in 0 1 2 3 4; do
    curl -sf --max-time 300 "http://127.0.0.1:$J_QUERY/api/traces?service=svc-$i&start=$t0_us&end=$end_us&limit=$SPANS" ||
      echo '{"data":[]}'
    echo
  done | python3 -c '
import json, sys
spans, traces = 0, set()
for line in sys.stdin:
    if line.strip():
        for t in json.loads(line).get("data") or []:
            traces.add(t["traceID"]); spans += len(t["spans"])
print(spans, len(traces))'
}

# Stored rows in serve's database (every hourly partition), read beside the running server.
serve_count() {
  local db=$1/serve.db q
  if ! command -v sqlite3 >/dev/null; then
    curl -sf -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$API/api/v1/stats" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["received"]["spans"], "?")'
    return
  fi
  q=$(sqlite3 -readonly "$db" "SELECT group_concat('SELECT trace_id FROM spans_' || hour, ' UNION ALL ') FROM partitions")
  sqlite3 -readonly "$db" "SELECT count(*), count(DISTINCT trace_id) FROM ($q)" | tr '|' ' '
}

ROWS=()
LOST=0
# measure NAME PID URL KEY DATA_DIR: one load into a started backend, one table row.
measure() {
  local name=$1 pid=$2 url=$3 key=$4 dir=$5 c0 c1 out n traces sps stored st_traces settle=ok
  local t0_us=$(( ($(date +%s) - 60) * 1000000 ))
  c0=$(cpu_ticks "$pid")
  out=$("$load" load "$url" "$key" "$SPANS" "$CONC" "$BATCH")
  n=$(field spans_accepted "$out"); traces=$(field traces_accepted "$out"); sps=$(field spans_per_s "$out")
  if [ "${name#jaeger}" != "$name" ]; then
    # Jaeger answers once the batch processor took the spans, before they are stored: wait
    # (bounded) until its exporter handed them all to storage, so CPU and counts are complete
    for _ in $(seq 600); do [ "$(jaeger_sent)" -ge "$n" ] && break; sleep 0.1; done
    [ "$(jaeger_sent)" -ge "$n" ] || settle="exporter sent $(jaeger_sent) after 60 s"
  fi
  c1=$(cpu_ticks "$pid")
  local hwm; hwm=$(hwm_mib "$pid")
  if [ "${name#jaeger}" != "$name" ]; then read -r stored st_traces < <(jaeger_count "$t0_us")
  else read -r stored st_traces < <(serve_count "$dir"); fi
  local lost=$(( n - stored ))
  local lost_t="?"
  [ "$st_traces" != "?" ] && lost_t=$(( traces - st_traces ))
  if [ "$lost" -ne 0 ] || { [ "$lost_t" != "?" ] && [ "$lost_t" -ne 0 ]; }; then LOST=1; fi
  local cpu100k; cpu100k=$(awk -v a="$c0" -v b="$c1" -v t="$clk_tck" -v n="$n" 'BEGIN {printf "%.2f", (b - a) / t / n * 100000}')
  ROWS+=("$(printf '%-14s %9s %11s %9s %10s %10s %9s %10s %10s %6s' "$name" "$sps" "$cpu100k" "$hwm" \
    "$n" "$stored" "$traces" "$st_traces" "$lost/$lost_t" "$(du -sh "$dir" | cut -f1)")")
  echo "ingest $name: $out cpu_s_per_100k=$cpu100k peak_rss_mib=$hwm stored_spans=$stored stored_traces=$st_traces${settle:+ settle=$settle}" >&2
}

start_jaeger() {
  local dir=$1 storage=$2
  jaeger_config "$dir" "$storage"
  "$jaeger" --config "$dir/config.yaml" >"$dir.log" 2>&1 &
  JAEGER_PID=$!
  pids+=("$JAEGER_PID")
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$J_QUERY/api/services" >/dev/null &&
      curl -s -o /dev/null "http://127.0.0.1:$J_HTTP/" && return
    kill -0 "$JAEGER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "jaeger ($storage) did not start; its log:" >&2; tail -20 "$dir.log" >&2; exit 1
}

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

bench_ingest() {
  for b in $BACKENDS; do
    case $b in
      serve)
        start_serve "$work/serve"
        measure serve "$SERVE_PID" "http://127.0.0.1:$HTTP/v1/traces" "$KEY" "$work/serve"
        stop_serve ;;
      jaeger-memory|jaeger-badger)
        build_jaeger
        start_jaeger "$work/$b" "${b#jaeger-}"
        measure "$b" "$JAEGER_PID" "http://127.0.0.1:$J_HTTP/v1/traces" x "$work/$b"
        stop_pid "$JAEGER_PID" ;;
      *) echo "unknown backend $b" >&2; exit 2 ;;
    esac
  done
  echo "ingest: $SPANS spans, $CONC concurrent requests of $BATCH spans, OTLP/HTTP protobuf, $(nproc) cores"
  printf '%-14s %9s %11s %9s %10s %10s %9s %10s %10s %6s\n' backend spans/s cpu_s/100k peak_mib \
    spans_ack spans_kept traces_ack traces_kept 'lost(s/t)' disk
  printf '%s\n' "${ROWS[@]}"
  if [ "$LOST" -ne 0 ]; then
    echo "ingest: FAIL: a backend stored fewer spans or traces than it acknowledged" >&2
    return 1
  fi
}

bench_collector() {
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
  collector) bench_collector ;;
  query) bench_query ;;
  all) bench_idle; rc=0; bench_ingest || rc=$?; bench_collector; bench_query; exit $rc ;;
  *) echo "usage: $0 [all|idle|ingest|collector|query]" >&2; exit 2 ;;
esac
