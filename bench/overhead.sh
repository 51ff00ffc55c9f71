#!/usr/bin/env bash
# What `obs-stack inject` costs an app, the way its users feel it. Measured side by side in one
# run on this machine, for each app, with these variants (VARIANTS; each its own container,
# started once):
#   base      the app as it is (not instrumented)
#   aa        (opt-in) the same as base, its own container: the A/A control. Its delta against
#             base is what this run cannot tell from noise; deltas that size are not effects.
#   dev       obs-stack inject --profile dev (every trace, every instrumentation)
#   prod      obs-stack inject --profile prod (templates/agents.yaml of this checkout)
#   prod0     (opt-in) the prod profile of PROD0_REV's agents.yaml: the before of a change
#   operator  Operator-style defaults: always_on sampling, every instrumentation the agent
#             enables by default, traces + metrics + logs over OTLP, exemplars on, metrics
#             every 60 s (what the OpenTelemetry Operator sets up with a bare Instrumentation)
# Method:
#   - open-loop, constant-rate load (vegeta) at LOAD (0.5) × the base variant's capacity, measured
#     at the start of the app's series with a closed-loop wrk pass: latency reflects the work
#     added per request, not queueing behind a saturated server. Three endpoints: /work?n=N (N
#     rounds of an integer loop: the same CPU in every variant, N calibrated on base at the
#     start so that a request costs ~WORK_MS (5) ms of CPU), the same with N/5 (~1 ms; "/work1"
#     in the output) and /orders/7 (a JSON handler, well under 1 ms of the app's own work).
#     A fixed count, not the fixtures' default 5 ms of wall time: a wall-clock spin does less
#     work when a request is preempted, so its CPU per request depends on how requests overlap
#     rather than on the work the agent adds.
#   - a saturation pass (wrk, closed loop, CONNS connections) for throughput.
#   - CPU per request from the container's cgroup (cpuacct), in both passes.
#   - app containers pinned to APP_CPUS (1) with --cpuset-cpus, no CPU quota; vegeta, wrk and
#     the collector pinned to LOAD_CPUS (0). Only one variant is under load at a time; the
#     variants are interleaved in ROUNDS rounds (order rotated each round), and every delta is
#     the median of the per-round deltas against base in the same round, with [min–max].
#     FRESH=1 restarts every container at the start of each round (a new process, new memory
#     layout and hash seeds; then WARMUP again), so a per-process offset shows in the spread
#     instead of biasing every round the same way.
#     `!` marks a delta whose spread (max − min) is larger than the delta itself: noise.
#     FREEZE=1 freezes (docker pause) the other variants' containers while one is measured, so
#     their timers (an agent's metric and event-loop monitors wake 100 times a second) do not
#     run on the measured container's CPU and evict its caches between requests. Off by
#     default: on Express it changed nothing measurable (README, Agent overhead).
#   - idle CPU: ms of CPU per second with no traffic, all variants over the same IDLE window;
#   - memory: anonymous RSS of the container's cgroup (memory.stat total_rss) after the rounds;
#     start-up: `docker start` to the first 200 on /work, START_ROUNDS times, interleaved.
#   - the collector receives everything (traces and logs to its debug exporter, metrics to a
#     file); at the end the script checks that every instrumented variant's
#     http.server.request.duration reached it (RED metrics intact).
#
# Usage: bench/overhead.sh [APP...]
#   APP: py-flask (Flask under gunicorn, 2 sync workers) py-django (gunicorn, 2 sync workers)
#        py-fastapi (uvicorn) node-express node-nestjs java-springboot; default all six
# Env: ROUNDS (7) DURATION (3s, each fixed-rate step on /work) DURATION_LIGHT (2s, on ~1 ms and /orders/7)
#      SAT_DURATION (2s) SAT_ROUNDS (3)
#      LOAD (0.5) MAX_RATE (1500 req/s cap for the light endpoints) CONNS (4)
#      START_ROUNDS (2) IDLE (5s, idle CPU window) WARMUP (3s) JAVA_WARMUP (15s) VARIANTS ("base dev prod operator")
#      WORK_MS (5) FRESH (0) FREEZE (0)
#      PROD0_REV (86dbfd6) PROD0_APPS (apps that get prod0; default all) APP_CPUS (1) LOAD_CPUS (0) OBS_STACK (binary) RAW (file for raw rows)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-3s}
DURATION_LIGHT=${DURATION_LIGHT:-2s}
SAT_DURATION=${SAT_DURATION:-2s}
SAT_ROUNDS=${SAT_ROUNDS:-3}
LOAD=${LOAD:-0.5}
MAX_RATE=${MAX_RATE:-1500}
CONNS=${CONNS:-4}
START_ROUNDS=${START_ROUNDS:-2}
IDLE=${IDLE:-5s}
ALL_VARIANTS=(${VARIANTS:-base dev prod operator})
PROD0_APPS=${PROD0_APPS:-}
PROD0_REV=${PROD0_REV:-86dbfd6}
APP_CPUS=${APP_CPUS:-1}
WORK_MS=${WORK_MS:-5}
FRESH=${FRESH:-0}
FREEZE=${FREEZE:-0}
LOAD_CPUS=${LOAD_CPUS:-0}
. bench/lib.sh
bench_obs_stack
bench_vegeta
command -v wrk >/dev/null || { echo "wrk is required" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is required (the summary)" >&2; exit 2; }
APPS=("$@")
[ ${#APPS[@]} -gt 0 ] || APPS=(py-flask py-django py-fastapi node-express node-nestjs java-springboot)

COLLECTOR_IMAGE=${COLLECTOR_IMAGE:-obs-lab/otelcol:0.159.0}
export OBS_STACK_AGENT_IMAGE_PYTHON=${OBS_STACK_AGENT_IMAGE_PYTHON:-obs-lab/autoinstrumentation-python:0.65b0}
export OBS_STACK_AGENT_IMAGE_NODE=${OBS_STACK_AGENT_IMAGE_NODE:-obs-lab/autoinstrumentation-nodejs:0.78.0}
export OBS_STACK_AGENT_IMAGE_JAVA=${OBS_STACK_AGENT_IMAGE_JAVA:-obs-lab/autoinstrumentation-java:2.31.0}
RUN=ovh-$$
LABEL=io.obs-stack.bench=$RUN
WORK=$(mktemp -d)
export OBS_STACK_STATE_DIR=$WORK/state
mkdir -p "$OBS_STACK_STATE_DIR" "$WORK/tpl-prod" "$WORK/tpl-prod0" "$WORK/otel"
chmod 777 "$WORK/otel"
cp templates/agents.yaml "$WORK/tpl-prod/agents.yaml"
RAW=${RAW:-$WORK/raw.tsv}
: >"$RAW"
NET=$RUN-net
cleanup() {
  local ids; ids=$(docker ps -q --filter label=$LABEL --filter status=paused)
  [ -z "$ids" ] || docker unpause $ids >/dev/null 2>&1 || true
  ids=$(docker ps -aq --filter label=$LABEL)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
  docker network rm $NET >/dev/null 2>&1 || true
  docker volume rm $(docker volume ls -q --filter label=$LABEL) >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

secs() { local d=$1; d=${d%s}; echo "$d"; }
port_of() { docker port "$1" "$2/tcp" 2>/dev/null | sed -n 's/^127\.0\.0\.1://p' | head -1; }
now_ms() { date +%s%3N; }
wait_http() { # port path timeout_s
  local deadline=$(( $(date +%s) + $3 ))
  until curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$1$2" 2>/dev/null; do
    [ "$(date +%s)" -lt $deadline ] || { echo "timeout waiting for :$1$2" >&2; return 1; }
    sleep 0.02
  done
}
cg() { echo "/sys/fs/cgroup/$1/docker/$(docker inspect -f '{{.Id}}' "$2")"; }
declare -A CID  # container name → id, filled once the variants are up (saves a docker call per read)
cpu_ns() { # CPU time used by container $1 (cgroup v1 cpuacct, or v2 cpu.stat), ns
  local id=${CID[$1]:-}; [ -n "$id" ] || id=$(docker inspect -f '{{.Id}}' "$1")
  if [ -r /sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage ]; then
    cat /sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage
  elif [ -r /sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat ]; then
    awk '$1=="usage_usec" {print $2*1000}' /sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat
  else echo 0; fi
}
rss_mib() { # anonymous RSS of container $1's cgroup, MiB
  local id; id=$(docker inspect -f '{{.Id}}' "$1")
  if [ -r /sys/fs/cgroup/memory/docker/$id/memory.stat ]; then
    awk '$1=="total_rss" {printf "%.1f\n", $2/1048576}' /sys/fs/cgroup/memory/docker/$id/memory.stat
  elif [ -r /sys/fs/cgroup/system.slice/docker-$id.scope/memory.stat ]; then
    awk '$1=="anon" {printf "%.1f\n", $2/1048576}' /sys/fs/cgroup/system.slice/docker-$id.scope/memory.stat
  else echo NaN; fi
}
# Open-loop: vegeta at a constant rate → "p50_ms p99_ms cpu_ms_per_req success_ratio"
fixed_rate() { # container url rate duration
  local c0 c1 js
  c0=$(cpu_ns "$1")
  js=$(echo "GET $2" | taskset -c "$LOAD_CPUS" "$VEGETA" attack -rate="$3/s" -duration="$4" -timeout=5s \
        | taskset -c "$LOAD_CPUS" "$VEGETA" report -type=json)
  c1=$(cpu_ns "$1")
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); l=r["latencies"]; n=max(r["requests"],1)
print("%.3f %.3f %.4f %.4f" % (l["50th"]/1e6, l["99th"]/1e6, (int(sys.argv[3])-int(sys.argv[2]))/1e6/n, r["success"]))' "$js" "$c0" "$c1"
}
# Closed-loop saturation: wrk → "req_per_s cpu_ms_per_req"
saturate() { # container url duration [connections, default CONNS]
  local c0 c1 out
  c0=$(cpu_ns "$1")
  out=$(taskset -c "$LOAD_CPUS" wrk -t1 -c"${4:-$CONNS}" -d"$3" "$2")
  c1=$(cpu_ns "$1")
  echo "$out" | awk -v c0="$c0" -v c1="$c1" '$1=="Requests/sec:" {rps=$2} / requests in / {n=$1}
    END {printf "%.1f %.4f\n", rps, (n>0) ? (c1-c0)/1e6/n : 0}'
}
row() { printf '%s\n' "$*" | tr ' ' '\t' >>"$RAW"; }

# The prod profile before the change under test (variant prod0).
if printf '%s\n' "${ALL_VARIANTS[@]}" | grep -qx prod0; then
  git show "$PROD0_REV:templates/agents.yaml" >"$WORK/tpl-prod0/agents.yaml"
fi

# Collector: traces and logs counted by the debug exporter, metrics to a file we read at the end.
cat >"$WORK/otelcol.yaml" <<'EOF'
receivers:
  otlp:
    protocols:
      http:
        endpoint: 0.0.0.0:4318
      grpc:
        endpoint: 0.0.0.0:4317
processors:
  batch: {}
exporters:
  debug:
    verbosity: basic
  file:
    path: /data/metrics.jsonl
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [debug]}
    logs: {receivers: [otlp], processors: [batch], exporters: [debug]}
    metrics: {receivers: [otlp], processors: [batch], exporters: [file]}
EOF
chmod 644 "$WORK/otelcol.yaml"
docker network create --label $LABEL $NET >/dev/null
docker run -d --name $RUN-collector --label $LABEL --network $NET --network-alias otel-collector \
  --cpuset-cpus "$LOAD_CPUS" -v "$WORK/otelcol.yaml:/etc/bench/otelcol.yaml:ro" -v "$WORK/otel:/data" \
  "$COLLECTOR_IMAGE" --config /etc/bench/otelcol.yaml >/dev/null

# gunicorn for the Flask app: the fixture image runs `flask run` (Werkzeug) and has no gunicorn,
# so the py-django image's gunicorn 22.0.0 (+ packaging) goes in through a read-only volume.
flask_gunicorn_volume() {
  docker volume create --label $LABEL $RUN-gunicorn >/dev/null
  docker run --rm --label $LABEL --user 0 --entrypoint sh -v $RUN-gunicorn:/out obs-lab/fixture-py-django:latest \
    -c 'cp -r /usr/local/lib/python3.11/dist-packages/gunicorn /usr/local/lib/python3.11/dist-packages/packaging /out/'
}

LOADAVG0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "obs-stack overhead benchmark — $(date -u +%FT%TZ), $(nproc) CPUs, load average at start: $LOADAVG0"
echo "apps on CPU $APP_CPUS (cpuset, no quota); vegeta/wrk/collector on CPU $LOAD_CPUS; $ROUNDS rounds interleaved;" \
  "fixed rate = $LOAD × capacity, $DURATION per step on /work, $DURATION_LIGHT on ~1 ms and /orders/7; saturation: wrk -c$CONNS $SAT_DURATION × $SAT_ROUNDS rounds"
echo "/work?n=N with N calibrated to ~$WORK_MS ms of CPU on base; $( [ "$FRESH" = 1 ] && echo 'every container restarted (+ warm-up) at the start of each round' || echo 'containers started once')$( [ "$FREEZE" = 1 ] && echo '; the other variants frozen (docker pause) while one is measured')"
echo "variants: ${ALL_VARIANTS[*]}$(printf '%s\n' "${ALL_VARIANTS[@]}" | grep -qx prod0 && echo " (prod0 = the prod profile of agents.yaml at $PROD0_REV${PROD0_APPS:+, for $PROD0_APPS only})")"
echo "obs-stack: $OBS_STACK ($(git rev-parse --short HEAD)$(git diff --quiet -- templates/agents.yaml || echo ', agents.yaml modified'))"

for app in "${APPS[@]}"; do
  VARIANTS=()
  for v in "${ALL_VARIANTS[@]}"; do
    [ $v = prod0 ] && [ -n "$PROD0_APPS" ] && ! [[ " $PROD0_APPS " == *" $app "* ]] && continue
    VARIANTS+=("$v")
  done
  image=obs-lab/fixture-$app:latest
  cmd=(); extra=(); warm=${WARMUP:-3s}; n0=50000
  case $app in
    py-flask)
      cport=5000; rt=python; label="Flask 3.0 under gunicorn 22 (2 sync workers)"
      [ -n "$(docker volume ls -q --filter name=$RUN-gunicorn)" ] || flask_gunicorn_volume
      extra=(-v $RUN-gunicorn:/opt/gunicorn:ro -e PYTHONPATH=/opt/gunicorn)
      cmd=(python3 -m gunicorn --workers 2 --bind 0.0.0.0:5000 app:app) ;;
    py-django) cport=8000; rt=python; label="Django 5.0 under gunicorn 22 (2 sync workers)" ;;
    py-fastapi) cport=8000; rt=python; label="FastAPI 0.110 under uvicorn 0.29 (1 worker)" ;;
    node-express) n0=2000000; cport=3000; rt=node; label="Express 4.19 on Node 20" ;;
    node-nestjs) n0=2000000; cport=3000; rt=node; label="NestJS 10.3 (platform-express) on Node 20" ;;
    java-springboot) n0=2000000; cport=8080; rt=java; label="Spring Boot 3.2 (Tomcat) on Java 17"; warm=${JAVA_WARMUP:-15s} ;;
    *) echo "unknown app $app" >&2; exit 2 ;;
  esac
  common=(--label $LABEL --network $NET --cpuset-cpus "$APP_CPUS" -p 127.0.0.1::$cport "${extra[@]}")
  # Operator-style: what a bare Operator Instrumentation gives (SDK defaults where it sets
  # nothing), passed as the user's own env, which inject keeps; on top of the dev profile.
  opstyle=(-e OTEL_TRACES_SAMPLER=always_on -e OTEL_LOGS_EXPORTER=otlp -e OTEL_METRICS_EXPORTER=otlp
           -e OTEL_METRICS_EXEMPLAR_FILTER=trace_based -e OTEL_METRIC_EXPORT_INTERVAL=60000)
  [ $rt = python ] && opstyle+=(-e OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true)

  for v in "${VARIANTS[@]}"; do
    env=(); [ $v = operator ] && env=("${opstyle[@]}")
    docker run -d --name $RUN-$app-$v "${common[@]}" "${env[@]}" "$image" "${cmd[@]}" >/dev/null
  done
  pids=()
  for v in "${VARIANTS[@]}"; do
    case $v in
      base|aa) continue ;;
      dev|operator) prof=dev; tpl=$WORK/tpl-prod ;;
      prod) prof=prod; tpl=$WORK/tpl-prod ;;
      prod0) prof=prod; tpl=$WORK/tpl-prod0 ;;
    esac
    "$OBS_STACK" -q inject $RUN-$app-$v --profile $prof --templates "$tpl" --grace 1 --stop-timeout 1 >/dev/null \
      || { echo "inject failed for $RUN-$app-$v" >&2; exit 1; } &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || exit 1; done
  declare -A PORT
  for v in "${VARIANTS[@]}"; do
    PORT[$v]=$(port_of $RUN-$app-$v $cport)
    wait_http "${PORT[$v]}" /work 180
    # inject recreates the container: the cpuset must have survived it.
    [ "$(docker inspect -f '{{.HostConfig.CpusetCpus}}' $RUN-$app-$v)" = "$APP_CPUS" ] || { echo "cpuset lost on $v" >&2; exit 1; }
    CID[$RUN-$app-$v]=$(docker inspect -f '{{.Id}}' $RUN-$app-$v)
  done
  work="/work?n=$n0"
  warm_up() { # variant: JIT, caches, the agent's lazy set-up
    saturate $RUN-$app-$1 "http://127.0.0.1:${PORT[$1]}$work" "$warm" >/dev/null
    saturate $RUN-$app-$1 "http://127.0.0.1:${PORT[$1]}/orders/7" 2s >/dev/null
  }
  for v in "${VARIANTS[@]}"; do warm_up "$v"; done
  freeze_others() { # variant pause|unpause: the other variants' containers (FREEZE=1)
    [ "$FREEZE" = 1 ] || return 0
    local o
    for o in "${VARIANTS[@]}"; do [ "$o" = "$1" ] || docker "$2" $RUN-$app-$o >/dev/null; done
  }
  # N for ~WORK_MS ms of CPU per /work request on base (one connection: no overlap).
  read -r _ cpu0 < <(saturate $RUN-$app-base "http://127.0.0.1:${PORT[base]}$work" "$SAT_DURATION" 1)
  n=$(awk -v n0="$n0" -v c="$cpu0" -v t="$WORK_MS" 'BEGIN {n=int(n0*t/c); print (n<1)?1:n}')
  work="/work?n=$n"
  # Capacity of the uninstrumented app → the fixed rates.
  read -r cap_w _ < <(saturate $RUN-$app-base "http://127.0.0.1:${PORT[base]}$work" "$SAT_DURATION")
  # On the light endpoint the agent's per-request cost is a large share of the request, so half
  # of base's capacity can be more than an instrumented variant serves at all (then it would
  # measure the queue): its rate is LOAD × the slowest variant's capacity.
  cap_o=
  for v in "${VARIANTS[@]}"; do
    read -r c _ < <(saturate $RUN-$app-$v "http://127.0.0.1:${PORT[$v]}/orders/7" "$SAT_DURATION")
    [ $v = base ] && cap_ob=$c
    cap_o=$(awk -v a="${cap_o:-$c}" -v b="$c" 'BEGIN {print (b<a)?b:a}')
  done
  rate_w=$(awk -v c="$cap_w" -v l="$LOAD" 'BEGIN {r=int(c*l); print (r<1)?1:r}')
  n1=$(( n / 5 > 0 ? n / 5 : 1 )); work1="/work?n=$n1"
  read -r cap_w1 _ < <(saturate $RUN-$app-base "http://127.0.0.1:${PORT[base]}$work1" "$SAT_DURATION")
  rate_w1=$(awk -v c="$cap_w1" -v l="$LOAD" -v m="$MAX_RATE" 'BEGIN {r=int(c*l); if (r>m) r=m; print (r<1)?1:r}')
  rate_o=$(awk -v c="$cap_o" -v l="$LOAD" -v m="$MAX_RATE" 'BEGIN {r=int(c*l); if (r>m) r=m; print (r<1)?1:r}')
  cap_o="$cap_ob/$cap_o"
  row meta "$app" rates "$rate_w" "$rate_o" "$cap_w" "$cap_o" "$(echo "$label" | tr ' \t' '__')" "$n" "$rate_w1" "$cap_w1"

  nv=${#VARIANTS[@]}
  for r in $(seq "$ROUNDS"); do
    if [ "$FRESH" = 1 ] && [ "$r" -gt 1 ]; then
      for v in "${VARIANTS[@]}"; do docker restart -t 1 $RUN-$app-$v >/dev/null; done
      for v in "${VARIANTS[@]}"; do
        PORT[$v]=$(port_of $RUN-$app-$v $cport)
        wait_http "${PORT[$v]}" "$work" 180
        warm_up "$v"
      done
    fi
    for i in $(seq 0 $((nv - 1))); do
      v=${VARIANTS[$(( (i + r - 1) % nv ))]}
      freeze_others "$v" pause
      read -r a b c d < <(fixed_rate $RUN-$app-$v "http://127.0.0.1:${PORT[$v]}$work" "$rate_w" "$DURATION")
      row fixed "$app" /work "$v" "$r" "$a" "$b" "$c" "$d"
      read -r a b c d < <(fixed_rate $RUN-$app-$v "http://127.0.0.1:${PORT[$v]}$work1" "$rate_w1" "$DURATION_LIGHT")
      row fixed "$app" /work1 "$v" "$r" "$a" "$b" "$c" "$d"
      read -r a b c d < <(fixed_rate $RUN-$app-$v "http://127.0.0.1:${PORT[$v]}/orders/7" "$rate_o" "$DURATION_LIGHT")
      row fixed "$app" /orders/7 "$v" "$r" "$a" "$b" "$c" "$d"
      if [ "$r" -le "$SAT_ROUNDS" ]; then
        read -r a b < <(saturate $RUN-$app-$v "http://127.0.0.1:${PORT[$v]}$work" "$SAT_DURATION")
        row sat "$app" /work "$v" "$r" "$a" "$b"
      fi
      freeze_others "$v" unpause
    done
    echo "  $app round $r/$ROUNDS done (load average $(cut -d' ' -f1 /proc/loadavg))" >&2
  done
  # Idle: CPU the variants burn with no request at all (timers, exporters), all at once over IDLE.
  declare -A I0
  for v in "${VARIANTS[@]}"; do I0[$v]=$(cpu_ns $RUN-$app-$v); done
  sleep "$(secs "$IDLE")"
  for v in "${VARIANTS[@]}"; do
    idle=$(awk -v a="${I0[$v]}" -v b="$(cpu_ns $RUN-$app-$v)" -v t="$(secs "$IDLE")" 'BEGIN {printf "%.3f", (b-a)/1e6/t}')
    row rss "$app" - "$v" 0 "$(rss_mib $RUN-$app-$v)" "$idle"
  done
  unset I0
  # Start-up: docker start → first 200 on /work, interleaved.
  for r in $(seq "$START_ROUNDS"); do
    for v in "${VARIANTS[@]}"; do
      docker stop -t 1 $RUN-$app-$v >/dev/null
      t0=$(now_ms); docker start $RUN-$app-$v >/dev/null
      p=$(port_of $RUN-$app-$v $cport)
      wait_http "$p" /work 180
      row start "$app" - "$v" "$r" $(( $(now_ms) - t0 ))
    done
  done
  for v in "${VARIANTS[@]}"; do docker stop -t 1 $RUN-$app-$v >/dev/null; done
  unset PORT
done

sleep 2
docker stop -t 10 $RUN-collector >/dev/null   # flushes the file exporter
# RED metrics at the collector: http.server.request.duration data points per service.
python3 - "$WORK/otel/metrics.jsonl" "$RUN" >"$WORK/red.tsv" <<'EOF'
import json, sys, collections
path, run = sys.argv[1], sys.argv[2]
count = collections.Counter()
routes = collections.defaultdict(set)
try:
    lines = open(path)
except OSError:
    lines = []
for line in lines:
    try:
        d = json.loads(line)
    except ValueError:
        continue
    for rm in d.get("resourceMetrics", []):
        svc = next((a["value"].get("stringValue") for a in rm.get("resource", {}).get("attributes", [])
                    if a["key"] == "service.name"), "?")
        for sm in rm.get("scopeMetrics", []):
            for m in sm.get("metrics", []):
                if m["name"] != "http.server.request.duration":
                    continue
                pts = m.get("histogram", {}).get("dataPoints", [])
                for p in pts:
                    r = next((a["value"].get("stringValue") for a in p.get("attributes", []) if a["key"] == "http.route"), None)
                    if r:
                        routes[svc].add(r)
                # cumulative or delta: the largest export is a lower bound of the requests seen
                count[svc] = max(count[svc], sum(int(p.get("count", 0)) for p in pts))
for svc in sorted(count):
    print(f"red\t{svc.replace(run + '-', '')}\t{','.join(sorted(routes[svc])) or '-'}\t{count[svc]}")
EOF
cat "$WORK/red.tsv" >>"$RAW"

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$ROOT/bench/overhead_report.py" "$RAW" "${ALL_VARIANTS[@]}"
[ -z "${KEEP_RAW:-}" ] || cp "$RAW" "$KEEP_RAW"
