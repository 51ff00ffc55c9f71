#!/usr/bin/env bash
# What a prod profile setting costs or saves per request, measured side by side in one run: for
# Express (Node.js) and FastAPI (uvicorn), the same app in VARIANTS (default "base prod0 prod"):
#   base    no agent
#   prod    the prod profile's agent settings (templates/agents.yaml: layer spans off, 10% of
#           traces)
#   prod0   prod with the framework's layer spans on (OBS_STACK_LAYER_SPANS unset, as before)
#   prod@R  prod with trace sampling ratio R (e.g. prod@0 prod@0.1 prod@1)
# Where prod's cost sits, one part of the agent at a time:
#   prod-sdk        prod with no instrumentation at all: the SDK, its context manager, exporters
#                   and resource detection only (Express: OTEL_NODE_ENABLED_INSTRUMENTATIONS=http
#                   with http disabled too; FastAPI: fastapi and starlette disabled)
#   prod-http       Express only: prod with the HTTP instrumentation alone (no Express
#                   instrumentation, so no route: a measurement, not a profile)
#   prod-nometrics  prod without the metrics pipeline (OTEL_METRICS_EXPORTER=none: the duration
#                   histogram records into a no-op meter)
# Each round starts a FRESH app process per variant (an A/A difference between two long-lived
# containers of the same config reached 9% in bench/overhead.sh), pinned to CPU APP_CPU, and
# drives it with vegeta at a fixed RATE on /orders/7 (a light handler, so the agent's share is
# visible) for DUR; CPU per request comes from the process's own utime+stime. Variants take
# turns in ROUNDS rounds; the summary gives the median and [min–max] per variant and the
# agent's added CPU per variant. Telemetry goes to a real receiver (obs-stack serve on 127.0.0.1,
# its own temporary data dir).
#
# Runs on the host (node, python3 3.11, vegeta, taskset); the agents come from the lab images
# (tests/lab/build-agents.sh), the hooks from this checkout (compose/agents/).
# Usage: bench/agent-ab.sh [express|fastapi ...]   Env: VARIANTS ("base prod0 prod") ROUNDS (5)
#        RATE_EXPRESS (1200) RATE_FASTAPI (500) DUR (10s) APP_CPU (1) LOAD_CPU (0) OBS_STACK (binary)
# The sampling-ratio run in the README: VARIANTS="base prod@0 prod@0.01 prod@0.1 prod@1" ROUNDS=5
#        RATE_EXPRESS=100 RATE_FASTAPI=100 bench/agent-ab.sh
# The split by part of the agent in the README: VARIANTS="base prod-sdk prod-http prod-nometrics
#        prod@0 prod" ROUNDS=7 RATE_EXPRESS=200 bench/agent-ab.sh express, and VARIANTS="base
#        prod-sdk prod-nometrics prod@0 prod" ROUNDS=7 RATE_FASTAPI=200 bench/agent-ab.sh fastapi
# PERF=1 (Express only): also `perf record`s the app's main thread during each step (node with
# --perf-basic-prof, every variant) and prints where each variant's CPU per request goes: V8's
# inline-cache and property-lookup slow paths, optimized JS, interpreted/baseline JS, GC, the
# kernel, and the rest (V8 runtime and builtins, libuv, llhttp, libc). PERF_HZ (2000).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-10s}
APP_CPU=${APP_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
. bench/lib.sh
bench_obs_stack
bench_vegeta
for t in node python3 taskset curl docker; do
  command -v $t >/dev/null || { echo "$t is required" >&2; exit 2; }
done
read -r -a VARIANTS <<<"${VARIANTS:-base prod0 prod}"
for v in "${VARIANTS[@]}"; do
  [[ $v =~ ^(base|prod0|prod|prod-sdk|prod-http|prod-nometrics|prod@(0|1|0?\.[0-9]+|1\.0+))$ ]] \
    || { echo "unknown variant $v (base, prod0, prod, prod-sdk, prod-http, prod-nometrics, prod@RATIO)" >&2; exit 2; }
done
APPS=("$@")
[ ${#APPS[@]} -gt 0 ] || APPS=(express fastapi)
for a in "${APPS[@]}"; do
  [[ $a == express || $a == fastapi ]] || { echo "unknown app $a (express, fastapi)" >&2; exit 2; }
  [[ $a == fastapi && " ${VARIANTS[*]} " == *" prod-http "* ]] \
    && { echo "prod-http is Express only (FastAPI's HTTP layer is its ASGI instrumentation)" >&2; exit 2; }
done
FIX=$ROOT/tests/fixtures/apps
[ -d "$FIX/node-express/build/node_modules" ] && [ -d "$FIX/py-fastapi/build/site-packages" ] \
  || { echo "fixture dependencies missing: run tests/lab/build-fixtures.sh first" >&2; exit 2; }

WORK=$(mktemp -d)
SERVE_PID=
APP_PID=
cleanup() {
  [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null || true
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The agents, as the volumes hold them: the image's tree plus obs-stack's hook.
extract() { # image dir
  local id
  id=$(docker create "$1" true)
  mkdir -p "$2"
  docker cp -L "$id:/autoinstrumentation/." "$2/" >/dev/null
  docker rm "$id" >/dev/null
  mkdir -p "$2/obs-stack-guard"
}
extract "${OBS_STACK_AGENT_IMAGE_NODE:-obs-lab/autoinstrumentation-nodejs:0.78.0}" "$WORK/node"
cp compose/agents/node-hook/register.js "$WORK/node/obs-stack-guard/"
extract "${OBS_STACK_AGENT_IMAGE_PYTHON:-obs-lab/autoinstrumentation-python:0.65b0}" "$WORK/python"
cp compose/agents/python-guard/sitecustomize.py "$WORK/python/obs-stack-guard/"

# The receiver.
taskset -c "$LOAD_CPU" "$OBS_STACK" serve --data-dir "$WORK/serve" --otlp-http 127.0.0.1:14318 \
  --otlp-grpc 127.0.0.1:14317 --api 127.0.0.1:14319 >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:14319/healthz && break; sleep 0.2; done
KEY=$(OBS_STACK_DATA_DIR=$WORK/serve "$OBS_STACK" serve project add bench 2>/dev/null | tail -1)

# What inject's prod profile sets (templates/agents.yaml), apart from the hook paths.
COMMON=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:14318 OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
  "OTEL_EXPORTER_OTLP_HEADERS=x-obs-stack-key=$KEY" OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=otlp
  OTEL_LOGS_EXPORTER=none OTEL_TRACES_SAMPLER=parentbased_traceidratio
  OTEL_METRIC_EXPORT_INTERVAL=60000 OTEL_SEMCONV_STABILITY_OPT_IN=http OTEL_METRICS_EXEMPLAR_FILTER=always_off)
NODE_DISABLED=fs,dns,net,runtime-node,nestjs-core
NODE_AGENT=(NODE_OPTIONS="--require $WORK/node/obs-stack-guard/register.js"
  OTEL_NODE_RESOURCE_DETECTORS=env,host,os,process,serviceinstance,container
  OTEL_NODE_DISABLED_INSTRUMENTATIONS=$NODE_DISABLED)
PY_DISABLED=requests,urllib,urllib3,httpx,aiohttp-client,jinja2,threading,asyncio,logging,system_metrics
PY_AGENT=(OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=otel,process,os OBS_STACK_PYTHON_AGENT=$WORK/python
  OBS_STACK_PYTHON_ABI=3.11 OTEL_PYTHON_LOG_CORRELATION=false
  OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=$PY_DISABLED)

stop_app() { # SIGTERM, then SIGKILL after 5 s (a server may wait for its keep-alive clients)
  kill "$APP_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$APP_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$APP_PID" 2>/dev/null || true
  wait "$APP_PID" 2>/dev/null || true
  APP_PID=
}

cpu_ticks() { # pid: utime+stime of the process and its children, in clock ticks
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat)))
  done
  echo $t
}

# The prod profile's trace ratio (templates/agents.yaml).
PROD_RATIO=$(python3 -c 'import yaml; print(yaml.safe_load(open("templates/agents.yaml"))["profiles"]["prod"]["sampler_arg"])')

# run APP VARIANT: one fresh process, warm-up, a fixed-rate step; prints "cpu_ms_per_req p50_ms"
run() {
  local app=$1 v=$2 port rate dir env=() cmd=() ratio=$PROD_RATIO name=${2/@/-r}
  case $app in
    express)
      port=13000 rate=${RATE_EXPRESS:-1200} dir=$FIX/node-express
      cmd=(node server.js)
      env=(PORT=$port NODE_PATH=$dir/build/node_modules)
      [ "$v" != base ] && env+=("${COMMON[@]}" "${NODE_AGENT[@]}" OTEL_SERVICE_NAME=express-$name) ;;
    fastapi)
      port=18000 rate=${RATE_FASTAPI:-500} dir=$FIX/py-fastapi
      cmd=(python3 -m uvicorn main:app --host 127.0.0.1 --port $port --no-access-log)
      if [ "$v" = base ]; then
        env=(PYTHONPATH=$dir/build/site-packages)
      else
        env=("${COMMON[@]}" "${PY_AGENT[@]}" OTEL_SERVICE_NAME=fastapi-$name
          PYTHONPATH=$WORK/python/obs-stack-guard:$dir/build/site-packages:$WORK/python)
      fi ;;
  esac
  [[ $v == prod@* ]] && ratio=${v#prod@}
  [[ $v == prod* ]] && env+=(OTEL_TRACES_SAMPLER_ARG=$ratio)
  [[ $v == prod || $v == prod@* || $v == prod-* ]] && env+=(OBS_STACK_LAYER_SPANS=off)
  # Later assignments win (env(1) applies them in order).
  case $app:$v in
    express:prod-sdk) env+=(OTEL_NODE_ENABLED_INSTRUMENTATIONS=http
      OTEL_NODE_DISABLED_INSTRUMENTATIONS=http,$NODE_DISABLED) ;;
    express:prod-http) env+=(OTEL_NODE_ENABLED_INSTRUMENTATIONS=http) ;;
    fastapi:prod-sdk) env+=(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi,starlette,$PY_DISABLED) ;;
    *:prod-nometrics) env+=(OTEL_METRICS_EXPORTER=none) ;;
  esac
  [ -n "${PERF:-}" ] && [ "$app" = express ] && cmd=(node --perf-basic-prof server.js)
  (cd "$dir" && exec env "${env[@]}" taskset -c "$APP_CPU" "${cmd[@]}") >"$WORK/app.log" 2>&1 &
  APP_PID=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/orders/7" && break; sleep 0.1; done
  local target="GET http://127.0.0.1:$port/orders/7"
  echo "$target" | taskset -c "$LOAD_CPU" "$VEGETA" attack -rate="$rate" -duration=3s >/dev/null
  local t0 t1 perf_pid= perf_data=$WORK/perf.data
  if [ -n "${PERF:-}" ] && [ "$app" = express ]; then
    taskset -c "$LOAD_CPU" perf record -q -F "${PERF_HZ:-2000}" -t "$APP_PID" -o "$perf_data" -- sleep "${DUR%s}" 2>/dev/null &
    perf_pid=$!
  fi
  t0=$(cpu_ticks $APP_PID)
  echo "$target" | taskset -c "$LOAD_CPU" "$VEGETA" attack -rate="$rate" -duration="$DUR" >"$WORK/res.bin"
  t1=$(cpu_ticks $APP_PID)
  "$VEGETA" report -type=json <"$WORK/res.bin" >"$WORK/res.json"
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || true
    perf report -i "$perf_data" --no-children --sort sym -g none -n --stdio 2>/dev/null | python3 -c '
import re, sys
cat = {}
for line in sys.stdin:
    m = re.match(r"\s+[\d.]+%\s+(\d+)\s+\[(.)\]\s+(.*)", line)
    if not m: continue
    n, kind, sym = int(m.group(1)), m.group(2), m.group(3)
    if kind == "k": c = "kernel"
    elif re.search(r"Builtins_\w*IC|IC::|LookupIterator|StubCache|FeedbackVector|MigrateToMap|Runtime_", sym): c = "ic"
    elif sym.startswith("JS:*"): c = "jit"
    elif re.match(r"JS:[~^]", sym) or re.search(r"Baseline|Interpreter|Bytecode", sym): c = "baseline"
    elif re.search(r"Heap|Scaveng|Marking|Sweep|GC", sym): c = "gc"
    else: c = "other"
    cat[c] = cat.get(c, 0) + n
print(" ".join("%s=%d" % kv for kv in sorted(cat.items())))' >"$WORK/perf.cat"
    echo "$app $v $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$WORK/res.json") $(cat "$WORK/perf.cat")" >>"$WORK/perf-raw"
  fi
  stop_app
  python3 -c '
import json, sys
r = json.load(open(sys.argv[3])); ticks = int(sys.argv[1]); hz = int(sys.argv[2])
if r["success"] < 1: sys.exit("failed requests: %s" % r["success"])
print("%.4f %.3f" % (ticks * 1000.0 / hz / r["requests"], r["latencies"]["50th"] / 1e6))' \
    $((t1 - t0)) "$(getconf CLK_TCK)" "$WORK/res.json"
}

echo "obs-stack agent A/B — $(date -u +%FT%TZ), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "fresh process per variant and round, CPU $APP_CPU; vegeta on CPU $LOAD_CPU; $ROUNDS rounds of $DUR on /orders/7 (express ${RATE_EXPRESS:-1200}/s, fastapi ${RATE_FASTAPI:-500}/s); telemetry to obs-stack serve"
echo "variants: ${VARIANTS[*]} (prod's trace ratio: $PROD_RATIO)"
echo "obs-stack: $OBS_STACK ($(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- templates compose/agents 2>/dev/null || echo ', agent settings modified'))"
RAW=$WORK/raw
n=${#VARIANTS[@]}
for app in "${APPS[@]}"; do
  for r in $(seq "$ROUNDS"); do
    # rotate the order each round
    for i in $(seq 0 $((n - 1))); do
      v=${VARIANTS[$(((i + r) % n))]}
      echo "$app $v $(run "$app" "$v")" >>"$RAW"
    done
    echo "  $app round $r/$ROUNDS done" >&2
  done
done
python3 - "$RAW" "${VARIANTS[@]}" <<'PY'
import collections, statistics, sys
variants = sys.argv[2:]
cpu = collections.defaultdict(list); p50 = collections.defaultdict(list)
for line in open(sys.argv[1]):
    app, v, c, p = line.split()
    cpu[(app, v)].append(float(c)); p50[(app, v)].append(float(p))
apps = list(dict.fromkeys(a for a, _ in cpu))
print("app      variant    CPU ms/req median [min–max]     p50 ms median   agent's added CPU/req")
for app in apps:
    b = statistics.median(cpu[(app, "base")]) if "base" in variants else None
    for v in variants:
        c = cpu[(app, v)]
        m = statistics.median(c)
        added = "" if b is None or v == "base" else "+%.4f ms" % (m - b)
        print("%-8s %-10s %.4f [%.4f–%.4f]        %.3f           %s" % (
            app, v, m, min(c), max(c), statistics.median(p50[(app, v)]), added))
PY
if [ -s "$WORK/perf-raw" ]; then
  echo "where the main thread's CPU goes (perf at ${PERF_HZ:-2000} Hz, all rounds pooled), ms per request:"
  python3 - "$WORK/perf-raw" "${PERF_HZ:-2000}" "${VARIANTS[@]}" <<'PY'
import collections, sys
hz = float(sys.argv[2]); variants = sys.argv[3:]
cats = ["ic", "other", "jit", "baseline", "gc", "kernel"]
req = collections.Counter(); n = collections.defaultdict(collections.Counter)
for line in open(sys.argv[1]):
    app, v, r, *kv = line.split()
    req[(app, v)] += int(r)
    for x in kv:
        k, c = x.split("="); n[(app, v)][k] += int(c)
print("app      variant    " + " ".join("%9s" % c for c in cats) + "     total")
for app in dict.fromkeys(a for a, _ in req):
    for v in variants:
        if not req[(app, v)]: continue
        per = [n[(app, v)][c] / hz * 1000 / req[(app, v)] for c in cats]
        print("%-8s %-10s " % (app, v) + " ".join("%9.4f" % x for x in per) + "   %.4f" % sum(per))
print("ic = inline-cache and property-lookup slow paths; other = V8 runtime and builtins, libuv, llhttp, libc")
PY
fi
# The receiver saw every instrumented variant that samples traces (a ratio-0 variant sends only
# metrics, every 60 s: a short-lived process may exit first; prod-sdk has nothing to send), else
# the figures are void.
sleep 2
curl -sf -H "Authorization: Bearer $(cat "$WORK/serve/token")" "http://127.0.0.1:14319/api/v1/services?project=bench" >"$WORK/services.json" \
  || { echo "obs-stack serve did not answer" >&2; exit 1; }
echo "telemetry received from: $(python3 -c 'import json,sys; print(", ".join(sorted(s["name"] for s in json.load(open(sys.argv[1]))["services"])))' "$WORK/services.json" 2>/dev/null || echo '?')"
for app in "${APPS[@]}"; do
  for v in "${VARIANTS[@]}"; do
    [[ $v == base || $v == prod-sdk || $v =~ ^prod@0?\.?0*$ ]] && continue
    grep -q "\"$app-${v/@/-r}\"" "$WORK/services.json" || { echo "no telemetry from $app-${v/@/-r} reached obs-stack serve: figures void" >&2; exit 1; }
  done
done
