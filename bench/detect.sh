#!/usr/bin/env bash
# obs-detect figures over the lab's fixture corpus: accuracy (per-framework precision/recall,
# language accuracy, abstain rate, Brier score of the stated confidence; warm through /proc,
# warm through the Docker API alone, and cold: 1 s after each container's start) and speed (warm
# single-container p50, --all over >= 20 containers, peak RSS). Prints figures; asserts nothing.
#
#   bench/detect.sh            # needs the fixture images (tests/lab/build-fixtures.sh)
#   RUNS=50 bench/detect.sh    # more runs for the p50
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
LABEL="io.obs-stack.bench=detect-$$"
BIN=${BIN:-target/release/obs-stack}   # BIN=target/debug/obs-stack: accuracy without a release build
OUT=$(mktemp -d)
cleanup() {
  docker ps -aq --filter "label=$LABEL" | xargs -r docker rm -f >/dev/null 2>&1 || true
  rm -rf "$OUT"
}
trap cleanup EXIT

if [ "$BIN" = target/release/obs-stack ]; then
  echo "== building release binary" >&2
  cargo build --release --quiet
fi

fixtures=()
for d in tests/fixtures/apps/*/; do
  name=$(basename "$d")
  [ -f "$d/expected.yaml" ] || continue
  if docker image inspect "obs-lab/fixture-$name:latest" >/dev/null 2>&1; then
    fixtures+=("$name")
  else
    echo "skip $name: image not built" >&2
  fi
done
[ ${#fixtures[@]} -gt 0 ] || { echo "no fixture images: run tests/lab/build-fixtures.sh" >&2; exit 2; }

echo "== starting ${#fixtures[@]} fixtures, each detected 1 s after its start (cold)" >&2
for name in "${fixtures[@]}"; do
  port=$(sed -n 's/^port: *//p' "tests/fixtures/apps/$name/expected.yaml")
  args=(-d --name "bench-detect-$name-$$" --label "$LABEL")
  [ -n "$port" ] && args+=(-p "127.0.0.1::$port")
  docker run "${args[@]}" "obs-lab/fixture-$name:latest" >/dev/null
  sleep 1
  "$BIN" --json detect "bench-detect-$name-$$" > "$OUT/$name.cold.json" || true
done
# wait for every published port to accept connections (JVMs take a few seconds)
for name in "${fixtures[@]}"; do
  port=$(sed -n 's/^port: *//p' "tests/fixtures/apps/$name/expected.yaml")
  [ -n "$port" ] || continue
  hp=$(docker port "bench-detect-$name-$$" "$port/tcp" | sed -n 's/^127.0.0.1://p' | head -1)
  path=$(sed -n 's/^http_path: *//p' "tests/fixtures/apps/$name/expected.yaml")
  for _ in $(seq 1 120); do
    if [ -n "$path" ]; then curl -fs -o /dev/null "http://127.0.0.1:$hp$path" && break
    else (exec 3<>"/dev/tcp/127.0.0.1/$hp") 2>/dev/null && break; fi
    sleep 0.5
  done
done

echo "== accuracy" >&2
for name in "${fixtures[@]}"; do
  "$BIN" --json detect "bench-detect-$name-$$" > "$OUT/$name.json" || true
  OBS_DETECT_API_ONLY=1 "$BIN" --json detect "bench-detect-$name-$$" > "$OUT/$name.api.json" || true
done
python3 bench/detect_score.py tests/fixtures/apps "$OUT"

echo
echo "== speed ($BIN, $(nproc) cores)"
one="bench-detect-${fixtures[0]}-$$"
for f in "${fixtures[@]}"; do [ "$f" = py-flask ] && one="bench-detect-py-flask-$$"; done
"$BIN" --json detect "$one" >/dev/null || true   # warm-up
: > "$OUT/times"
for _ in $(seq 1 "$RUNS"); do
  s=$(date +%s%N); "$BIN" --json detect "$one" >/dev/null || true; e=$(date +%s%N)
  echo $(( (e - s) / 1000000 )) >> "$OUT/times"
done
sort -n "$OUT/times" > "$OUT/times.sorted"
p50=$(awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}' "$OUT/times.sorted")
p90=$(awk '{a[NR]=$1} END {print a[int(NR*0.9+0.5)]}' "$OUT/times.sorted")
echo "single container ($one), all probes, warm: p50 ${p50} ms, p90 ${p90} ms over $RUNS runs"

# --all over >= 20 containers: the fixtures plus extra copies of the cheap ones
extra=0
while [ $(( ${#fixtures[@]} + extra )) -lt 22 ]; do
  docker run -d --label "$LABEL" --name "bench-detect-extra-$extra-$$" obs-lab/base:bookworm sleep 600 >/dev/null
  extra=$((extra + 1))
done
total=$(docker ps -q | wc -l)
"$BIN" --json detect --all >/dev/null || true   # warm-up
: > "$OUT/all"
for _ in 1 2 3 4 5; do
  s=$(date +%s%N); "$BIN" --json detect --all > "$OUT/all.json" || true; e=$(date +%s%N)
  echo $(( (e - s) / 1000000 )) >> "$OUT/all"
done
allp50=$(sort -n "$OUT/all" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "--all over $total running containers: p50 ${allp50} ms over 5 runs"

rss_one=$( { /usr/bin/time -v "$BIN" --json detect "$one" >/dev/null || true; } 2>&1 | sed -n 's/.*Maximum resident set size (kbytes): //p')
rss_all=$( { /usr/bin/time -v "$BIN" --json detect --all >/dev/null || true; } 2>&1 | sed -n 's/.*Maximum resident set size (kbytes): //p')
echo "peak RSS: single $((rss_one / 1024)) MiB ($rss_one KiB), --all $((rss_all / 1024)) MiB ($rss_all KiB)"
