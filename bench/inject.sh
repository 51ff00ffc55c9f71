#!/usr/bin/env bash
# Superseded for overhead figures by bench/overhead.sh (open-loop, cpuset-pinned, interleaved
# rounds with spreads, six apps, dev/prod/Operator-style); kept for the inject-to-first-200 timing.
# Cost of `obs-stack inject`, measured side by side in one run on this machine:
#   base      the app as it is (not instrumented)
#   prod      obs-stack inject --profile prod (10% sampling, noisy instrumentations off)
#   operator  Operator-style defaults: always_on sampling, every instrumentation, OTLP traces +
#             metrics + logs (what the OpenTelemetry Operator would set up)
# for a Python app under gunicorn (py-django, 2 sync workers) and an Express app, on /work
# (~5 ms of CPU work), each container limited to 1 CPU, a real collector receiving everything.
# wrk on 127.0.0.1 with CONNS connections; the variants are loaded together, ROUNDS times, and
# the median of the rounds is reported (runs vary with machine load: compare within one run).
# CPU per request (from the container's cgroup) is the figure that holds up on a busy machine.
# Also: time from `inject` to the instrumented app answering vs the container's own start time.
#
# Usage: bench/inject.sh [APP...]   (APP: py-django node-express; default both)
# Env: ROUNDS (3) DURATION (10s) CONNS (4) THREADS (2) OBS_STACK (binary; default target/…)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-4}
THREADS=${THREADS:-2}
. bench/lib.sh
bench_obs_stack
command -v wrk >/dev/null || { echo "wrk is required" >&2; exit 2; }
APPS=("$@")
[ ${#APPS[@]} -gt 0 ] || APPS=(py-django node-express)

COLLECTOR_IMAGE=${COLLECTOR_IMAGE:-obs-lab/otelcol:0.159.0}
export OBS_STACK_AGENT_IMAGE_PYTHON=${OBS_STACK_AGENT_IMAGE_PYTHON:-obs-lab/autoinstrumentation-python:0.65b0}
export OBS_STACK_AGENT_IMAGE_NODE=${OBS_STACK_AGENT_IMAGE_NODE:-obs-lab/autoinstrumentation-nodejs:0.78.0}
RUN=bench-$$
export OBS_STACK_STATE_DIR=$(mktemp -d)
NET=$RUN-net
cleanup() {
  docker rm -f $(docker ps -aq --filter label=io.obs-stack.bench=$RUN) >/dev/null 2>&1 || true
  docker network rm $NET >/dev/null 2>&1 || true
  rm -rf "$OBS_STACK_STATE_DIR"
}
trap cleanup EXIT

port_of() { docker port "$1" "$2/tcp" 2>/dev/null | sed -n 's/^127\.0\.0\.1://p' | head -1; }
now_ms() { date +%s%3N; }
wait_http() { # port path timeout_s
  local deadline=$(( $(date +%s) + $3 ))
  until curl -fsS -o /dev/null "http://127.0.0.1:$1$2" 2>/dev/null; do
    [ "$(date +%s)" -lt $deadline ] || { echo "timeout waiting for :$1$2" >&2; return 1; }
    sleep 0.05
  done
}
# CPU time a container has used, in ns (cgroup v1 cpuacct or v2 cpu.stat), or empty.
cpu_ns() {
  local id; id=$(docker inspect -f '{{.Id}}' "$1" 2>/dev/null) || return 0
  if [ -r /sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage ]; then
    cat /sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage
  elif [ -r /sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat ]; then
    awk '$1=="usage_usec" {print $2*1000}' /sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat
  fi
}
# wrk against container $1 → "p50_ms p99_ms rps cpu_ms_per_request" (NaN… when it is down).
# CPU per request comes from the container's cgroup: robust when other work shares the machine.
measure() {
  local port; port=$(port_of "$1" "$2")
  [ -n "$port" ] && curl -fsS -m 5 -o /dev/null "http://127.0.0.1:$port/work" 2>/dev/null || { echo "NaN NaN NaN NaN"; return; }
  local c0 c1 out
  c0=$(cpu_ns "$1")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/work")
  c1=$(cpu_ns "$1")
  echo "$out" | awk -v c0="${c0:-0}" -v c1="${c1:-0}" '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    $1=="50%" {p50=ms($2)} $1=="99%" {p99=ms($2)} $1=="Requests/sec:" {rps=$2}
    / requests in / {n=$1}
    END {cpu = (n > 0 && c1 > c0) ? (c1-c0)/1e6/n : 0; printf "%.3f %.3f %.1f %.4f\n", p50, p99, rps, cpu}'
}
median() { grep -v NaN | sort -n | awk '{a[NR]=$1} END {if (NR==0) print "NaN"; else print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

docker network create $NET >/dev/null
docker run -d --name $RUN-collector --label io.obs-stack.bench=$RUN --network $NET \
  --network-alias otel-collector "$COLLECTOR_IMAGE" >/dev/null

echo "obs-stack inject benchmark — $(date -u +%FT%TZ), $(nproc) CPUs, wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, medians"
for app in "${APPS[@]}"; do
  case $app in
    py-django) cport=8000; rt=python ;;
    node-express) cport=3000; rt=node ;;
    *) echo "unknown app $app" >&2; exit 2 ;;
  esac
  image=obs-lab/fixture-$app:latest
  common=(--label io.obs-stack.bench=$RUN --network $NET --cpus 1 -p 127.0.0.1::$cport)
  # Operator-style: what the Operator sets (always_on, metrics + logs over OTLP) — passed as the
  # user's own env, which inject never overrides; dev profile = every instrumentation on.
  opstyle=(-e OTEL_TRACES_SAMPLER=always_on -e OTEL_LOGS_EXPORTER=otlp -e OTEL_METRICS_EXPORTER=otlp)
  [ $rt = python ] && opstyle+=(-e OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true)

  # Own start time: docker run → first 200.
  t0=$(now_ms)
  docker run -d --name $RUN-$app-base "${common[@]}" "$image" >/dev/null
  wait_http "$(port_of $RUN-$app-base $cport)" /work 120
  start_ms=$(( $(now_ms) - t0 ))
  docker run -d --name $RUN-$app-prod "${common[@]}" "$image" >/dev/null
  docker run -d --name $RUN-$app-operator "${common[@]}" "${opstyle[@]}" "$image" >/dev/null
  for v in prod operator; do wait_http "$(port_of $RUN-$app-$v $cport)" /work 120; done

  # Inject: wall time of the command (includes the grace period) and time to first 200.
  t0=$(now_ms)
  "$OBS_STACK" -q inject $RUN-$app-prod --profile prod --grace 3 >/dev/null
  inject_cmd_ms=$(( $(now_ms) - t0 ))
  "$OBS_STACK" -q inject $RUN-$app-operator --profile dev --grace 3 >/dev/null
  # Time to healthy: a fresh inject of an already-prepared agent, measured to the first 200.
  "$OBS_STACK" -q inject --revert $RUN-$app-prod --grace 1 >/dev/null
  t0=$(now_ms)
  "$OBS_STACK" -q inject $RUN-$app-prod --profile prod --grace 0 >/dev/null
  wait_http "$(port_of $RUN-$app-prod $cport)" /work 120
  ready_ms=$(( $(now_ms) - t0 ))

  declare -A P50 P99 RPS CPU
  for v in base prod operator; do P50[$v]=""; P99[$v]=""; RPS[$v]=""; CPU[$v]=""; done
  for v in base prod operator; do measure $RUN-$app-$v $cport >/dev/null; done # warm-up
  # The variants are loaded at the same time (each has its own CPU quota), so whatever else
  # runs on the machine disturbs them alike; SEQUENTIAL=1 measures them one after the other.
  tmp=$(mktemp -d)
  for r in $(seq "$ROUNDS"); do
    for v in base prod operator; do
      if [ "${SEQUENTIAL:-0}" = 1 ]; then measure $RUN-$app-$v $cport >"$tmp/$v"; else measure $RUN-$app-$v $cport >"$tmp/$v" & fi
    done
    wait
    for v in base prod operator; do
      read -r p50 p99 rps cpu <"$tmp/$v"
      P50[$v]+="$p50 "; P99[$v]+="$p99 "; RPS[$v]+="$rps "; CPU[$v]+="$cpu "
    done
  done
  rm -rf "$tmp"
  echo
  echo "## $app ($rt) /work — container start to first 200: ${start_ms} ms; inject command (grace 3 s): ${inject_cmd_ms} ms; inject to first 200 (grace 0): ${ready_ms} ms"
  printf '%-10s %10s %10s %10s %12s %10s %10s %10s\n' variant p50_ms p99_ms req/s cpu_ms/req p50_Δ rps_Δ cpu/req_Δ
  b50=$(echo ${P50[base]} | tr ' ' '\n' | median); brps=$(echo ${RPS[base]} | tr ' ' '\n' | median)
  bcpu=$(echo ${CPU[base]} | tr ' ' '\n' | median)
  for v in base prod operator; do
    m50=$(echo ${P50[$v]} | tr ' ' '\n' | median)
    m99=$(echo ${P99[$v]} | tr ' ' '\n' | median)
    mrps=$(echo ${RPS[$v]} | tr ' ' '\n' | median)
    mcpu=$(echo ${CPU[$v]} | tr ' ' '\n' | median)
    if [ "$m50" = NaN ]; then
      printf '%-10s %s\n' $v "DOWN during the run: $(docker inspect -f 'exit {{.State.ExitCode}}, restarts {{.RestartCount}}' $RUN-$app-$v 2>/dev/null); last log: $(docker logs --tail 1 $RUN-$app-$v 2>&1 | tail -1)"
      continue
    fi
    awk -v v=$v -v a=$m50 -v b=$m99 -v c=$mrps -v d=$mcpu -v ba=$b50 -v bc=$brps -v bd=$bcpu 'BEGIN {
      printf "%-10s %10.2f %10.2f %10.1f %12.3f %+9.1f%% %+9.1f%% %+9.1f%%\n", v, a, b, c, d, (a-ba)/ba*100, (c-bc)/bc*100, (bd>0)?(d-bd)/bd*100:0 }'
  done
  # How much of the inject downtime is the original's own stop (StopTimeout when PID 1 ignores
  # SIGTERM, e.g. a `sh -c` wrapper): stop the identical base container the same way.
  t0=$(now_ms); docker stop $RUN-$app-base >/dev/null; stop_ms=$(( $(now_ms) - t0 ))
  echo "the app's own stop (docker stop): ${stop_ms} ms — part of the inject-to-first-200 time above"
  echo "rounds p50: base=[${P50[base]}] prod=[${P50[prod]}] operator=[${P50[operator]}]"
  echo "rounds cpu_ms/req: base=[${CPU[base]}] prod=[${CPU[prod]}] operator=[${CPU[operator]}]"
  unset P50 P99 RPS CPU
done
