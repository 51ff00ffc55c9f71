#!/usr/bin/env bash
# `obs-stack up`, measured on this machine (prints figures, asserts nothing):
#   1. per app (Flask, Express, Spring Boot): the app's own start time (docker start to its
#      first 200) beside the time from the end of `up` to its first request being visible in
#      `obs-stack status` (a request sent every second until one shows);
#   2. `up` on N containers (default 20: Flask, Express and static Go binaries in one compose
#      project), and `down` of the same.
# Usage: bench/up.sh            Env: N (20), OBS_STACK (binary; default target/release, else debug)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20}
. bench/lib.sh
bench_obs_stack
if docker inspect obs-stack >/dev/null 2>&1; then
  echo "a backend (container obs-stack) already runs: obs-stack down first" >&2
  exit 2
fi
tag() { docker images "$1" --format '{{.Tag}}' | head -1; }
OBS_STACK_AGENT_IMAGE_PYTHON=obs-lab/autoinstrumentation-python:$(tag obs-lab/autoinstrumentation-python)
OBS_STACK_AGENT_IMAGE_NODE=obs-lab/autoinstrumentation-nodejs:$(tag obs-lab/autoinstrumentation-nodejs)
OBS_STACK_AGENT_IMAGE_JAVA=obs-lab/autoinstrumentation-java:$(tag obs-lab/autoinstrumentation-java)
export OBS_STACK_AGENT_IMAGE_PYTHON OBS_STACK_AGENT_IMAGE_NODE OBS_STACK_AGENT_IMAGE_JAVA
WORK=$(mktemp -d)
export OBS_STACK_STATE_DIR=$WORK/state
P1=benchup$$
P2=benchupn$$
cleanup() {
  (cd "$WORK" && "$OBS_STACK" down --purge --grace 0 >/dev/null 2>&1) || true
  for p in $P1 $P2; do
    docker ps -aq --filter "label=com.docker.compose.project=$p" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
    docker network ls -q --filter "label=com.docker.compose.project=$p" | xargs -r docker network rm >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
port_of() { docker port "$1" "$2" 2>/dev/null | sed -n 's/^127\.0\.0\.1://p' | head -1; }
first_200() { # port timeout_s -> ms until a 200 on /, or "timeout"
  local start deadline
  start=$(now_ms); deadline=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if curl -sf -o /dev/null "127.0.0.1:$1/"; then echo $(( $(now_ms) - start )); return; fi
    sleep 0.2
  done
  echo timeout
}

# ---- 1. time to first visible request, per app ----
mkdir -p "$WORK/one"
cat > "$WORK/one/docker-compose.yml" <<'EOF'
services:
  shop:
    image: obs-lab/fixture-py-flask:latest
    ports: ["127.0.0.1::5000"]
  api:
    image: obs-lab/fixture-node-express:latest
    ports: ["127.0.0.1::3000"]
  billing:
    image: obs-lab/fixture-java-springboot:latest
    ports: ["127.0.0.1::8080"]
EOF
cd "$WORK/one"
export COMPOSE_PROJECT_NAME=$P1
docker-compose up -d >/dev/null 2>&1
declare -A OWN CPORT=([shop]=5000 [api]=3000 [billing]=8080)
for s in shop api billing; do
  c=${P1}_${s}_1
  docker stop -t 1 "$c" >/dev/null
  docker start "$c" >/dev/null
  OWN[$s]=$(first_200 "$(port_of "$c" "${CPORT[$s]}")" 120)
done
t0=$(now_ms)
"$OBS_STACK" up --grace 3 >/dev/null
UP1=$(( $(now_ms) - t0 ))
printf '\nup on Flask + Express + Spring Boot: %s ms\n' "$UP1"
printf '%-10s %18s %34s\n' app "own start (ms)" "end of up -> visible in status (ms)"
for s in shop api billing; do
  c=${P1}_${s}_1
  port=$(port_of "$c" "${CPORT[$s]}")
  start=$(now_ms); seen=timeout
  while [ $(( $(now_ms) - start )) -lt 120000 ]; do
    curl -s -o /dev/null "127.0.0.1:$port/orders/1" || true
    if "$OBS_STACK" status "$s" --json 2>/dev/null | grep -q '"calls"'; then
      seen=$(( $(now_ms) - start )); break
    fi
    sleep 1
  done
  printf '%-10s %18s %34s\n' "$s" "${OWN[$s]}" "$seen"
done
"$OBS_STACK" down --grace 0 >/dev/null

# ---- 2. up / down on N containers ----
mkdir -p "$WORK/many"
{
  echo "services:"
  for i in $(seq 1 "$N"); do
    case $(( i % 3 )) in
      0) img=obs-lab/fixture-py-flask:latest ;;
      1) img=obs-lab/fixture-node-express:latest ;;
      2) img=obs-lab/fixture-go-nethttp:latest ;;
    esac
    printf '  s%02d:\n    image: %s\n' "$i" "$img"
  done
} > "$WORK/many/docker-compose.yml"
cd "$WORK/many"
export COMPOSE_PROJECT_NAME=$P2
docker-compose up -d >/dev/null 2>&1
sleep 5
t0=$(now_ms)
"$OBS_STACK" up --grace 3 --json > "$WORK/many.json"
UPN=$(( $(now_ms) - t0 ))
agents=$(grep -o '"action": *"agent"' "$WORK/many.json" | wc -l)
t0=$(now_ms)
"$OBS_STACK" up --grace 3 >/dev/null
UPN2=$(( $(now_ms) - t0 ))
t0=$(now_ms)
"$OBS_STACK" down --grace 1 >/dev/null
DOWN=$(( $(now_ms) - t0 ))
printf '\nup on %s containers (%s with an agent): %s ms; again (all already instrumented): %s ms; down: %s ms\n' \
  "$N" "$agents" "$UPN" "$UPN2" "$DOWN"
