#!/usr/bin/env bash
# Re-captures the `docker inspect` JSON the inject planning tests read (tests/inject_plan.rs):
# real containers from the lab fixture images covering the tricky-config matrix. Run from the
# repo root with the lab built; it cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")"
P=capture-$$
cleanup() {
  docker rm -f $(docker ps -aq --filter label=io.obs-stack.capture=$P) >/dev/null 2>&1 || true
  docker network rm $P-front $P-back >/dev/null 2>&1 || true
  docker volume rm -f $P-data >/dev/null 2>&1 || true
}
trap cleanup EXIT
L="--label io.obs-stack.capture=$P"
docker network create --subnet 172.29.10.0/24 $P-front >/dev/null
docker network create --subnet 172.29.11.0/24 $P-back >/dev/null
docker volume create $P-data >/dev/null

# 1. Static IPs and aliases on two networks, named + anonymous volume, published port.
docker create $L --name matrix-static --network $P-front --ip 172.29.10.10 --network-alias api \
  -v $P-data:/var/lib/app -v /scratch -p 127.0.0.1::5000 obs-lab/fixture-py-flask:latest >/dev/null
docker network connect --ip 172.29.11.10 --alias api-internal $P-back matrix-static
# 2. Healthcheck, restart policy, memory/CPU limits, capabilities, log options.
docker create $L --name matrix-health --health-cmd 'curl -fsS http://127.0.0.1:5000/ || exit 1' \
  --health-interval 2s --health-retries 3 --restart on-failure:3 --memory 256m --cpus 0.5 \
  --cap-drop NET_RAW --log-opt max-size=1m obs-lab/fixture-py-flask:latest >/dev/null
# 3. Read-only root with tmpfs, non-root user, custom entrypoint and workdir.
docker create $L --name matrix-readonly --read-only --tmpfs /tmp:size=16m --user 10001:10001 \
  --entrypoint /bin/sh -w /app obs-lab/fixture-node-express:latest -c 'exec node server.js' >/dev/null
# 4. Compose-managed (labels as docker compose writes them), existing NODE_OPTIONS.
docker create $L --name shop-web-1 --label com.docker.compose.project=shop \
  --label com.docker.compose.service=web --label com.docker.compose.config-hash=abc123 \
  --label com.docker.compose.container-number=1 --label com.docker.compose.oneoff=False \
  -e NODE_OPTIONS=--max-old-space-size=256 -e OTEL_SERVICE_NAME=shop-frontend \
  --network $P-front --network-alias web obs-lab/fixture-node-express:latest >/dev/null
# 5. Already instrumented by Datadog (Java), with the user's JAVA_TOOL_OPTIONS.
docker create $L --name matrix-datadog -e JAVA_TOOL_OPTIONS='-Xmx256m -javaagent:/dd/dd-java-agent.jar' \
  -e DD_AGENT_HOST=datadog obs-lab/fixture-java-springboot:latest >/dev/null
# 6. Plain Java with its own JAVA_TOOL_OPTIONS; Go (no agent); host network.
docker create $L --name matrix-java -e JAVA_TOOL_OPTIONS=-Xmx128m obs-lab/fixture-java-springboot:latest >/dev/null
docker create $L --name matrix-go obs-lab/fixture-go-nethttp:latest >/dev/null
docker create $L --name matrix-hostnet --network host obs-lab/fixture-py-flask:latest >/dev/null

for c in matrix-static matrix-health matrix-readonly shop-web-1 matrix-datadog matrix-java matrix-go matrix-hostnet; do
  docker start $c >/dev/null 2>&1 || true
done
sleep 2
for c in matrix-static matrix-health matrix-readonly shop-web-1 matrix-datadog matrix-java matrix-go matrix-hostnet; do
  docker inspect $c | python3 -c 'import json,sys; json.dump(json.load(sys.stdin)[0], sys.stdout, indent=1, sort_keys=True)' > $c.json
  echo "captured $c.json"
done
