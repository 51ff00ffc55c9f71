#!/usr/bin/env bash
# Builds the obs-stack OpenTelemetry Collector from Go modules with the official builder (ocb),
# then the image obs-lab/otelcol:<version> FROM the lab base image. No container registry.
#
#   tests/lab/build-collector.sh            build (cached) binary + image, refresh components.txt
#   OBS_LAB_COLLECTOR_FORCE=1 …             rebuild the binary even when cached
#
# Cache: $OBS_STACK_CACHE (default ~/.cache/obs-stack)
#   ocb/v<builder>/builder                  the builder, installed with `go install`
#   otelcol/<hash>/otelcol                  the collector for one manifest hash (+ build.log, time.txt)
# A warm run (binary cached, image label current) takes seconds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/lab/lib.sh disable=SC1091
. "$here/lib.sh"

OTELCOL_VERSION=0.159.0
BUILDER_VERSION=v0.159.0
IMAGE=${OBS_LAB_COLLECTOR_IMAGE:-obs-lab/otelcol:$OTELCOL_VERSION}
src="$repo/compose/collector"
manifest="$src/manifest.yaml"
cache=${OBS_STACK_CACHE:-$HOME/.cache/obs-stack}
goproxy=${OBS_LAB_GOPROXY:-https://proxy.golang.org}

command -v go >/dev/null || { lab_log "go is required (go >= 1.25)"; exit 2; }

# 1. The builder.
builder_dir="$cache/ocb/$BUILDER_VERSION"
builder="$builder_dir/builder"
if [ ! -x "$builder" ]; then
  lab_log "installing ocb $BUILDER_VERSION into $builder_dir"
  mkdir -p "$builder_dir"
  CGO_ENABLED=0 GOBIN="$builder_dir" go install -trimpath -ldflags="-s -w" \
    "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
fi

# 2. The collector binary, keyed by the manifest (+ local replaces), builder and Go version.
go_version=$(go env GOVERSION)
# Only the build inputs count for the binary: re-hash without the Dockerfile/test config.
replaces_list="$src/replaces.txt"
bin_hash=$( { sha256sum "$manifest" "$replaces_list" | cut -d' ' -f1
              printf '%s\n' "$BUILDER_VERSION" "$go_version"; } | sha256sum | cut -c1-16)
out="$cache/otelcol/$bin_hash"
bin="$out/otelcol"

# Pinned modules from replaces.txt: "<module> <version> <dir>" lines.
replaced_modules() { grep -vE '^[[:space:]]*(#|$)' "$replaces_list" || true; }

# Each gomod module must exist on the Go proxy at the pinned version (a missing one fails fast
# here instead of deep inside `go mod tidy`); a replaced module must exist at its fetched version.
verify_modules() {
  local missing=0 mod ver lower code
  while read -r mod ver; do
    if replaced_modules | awk '{print $1}' | grep -qxF "$mod"; then
      ver=$(replaced_modules | awk -v m="$mod" '$1 == m {print $2}')
    fi
    # The proxy escapes upper-case letters as !lower.
    lower=$(printf '%s' "$mod" | sed -E 's/([A-Z])/!\L\1/g')
    code=$(curl -s -o /dev/null -w '%{http_code}' "$goproxy/$lower/@v/$ver.info" || echo 000)
    if [ "$code" != 200 ]; then
      lab_log "module not on $goproxy: $mod $ver (HTTP $code)"
      missing=1
    fi
  done < <(sed -nE 's/^[[:space:]]*-[[:space:]]*gomod:[[:space:]]*"?([^ "]+)[[:space:]]+([^ "#]+)"?.*/\1 \2/p' "$manifest"
           replaced_modules | awk '{print $1, $2}')
  return $missing
}

# Fills $out/replaces/<dir> with each replaced module's source (from the module cache), its
# collector requirements raised to this core (v0.1xx.0 -> v0.159.0, v1.xx.0 -> v1.65.0).
fetch_replaces() {
  local mod ver dir json srcdir core_beta core_stable
  core_beta=$BUILDER_VERSION
  core_stable=$(sed -nE 's#.*go\.opentelemetry\.io/collector/confmap/provider/envprovider (v1\.[0-9]+\.[0-9]+).*#\1#p' "$manifest")
  rm -rf "$out/replaces"; mkdir -p "$out/replaces"
  while read -r mod ver dir; do
    json=$(cd "$out" && go mod download -json "$mod@$ver") || { lab_log "cannot download $mod@$ver"; return 1; }
    srcdir=$(printf '%s' "$json" | sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')
    [ -d "$srcdir" ] || { lab_log "no source dir for $mod@$ver"; return 1; }
    cp -r "$srcdir" "$out/replaces/$dir"
    chmod -R u+w "$out/replaces/$dir"
    sed -i -E \
      -e "/^[[:space:]]*(go\.opentelemetry\.io\/collector|github\.com\/open-telemetry\/opentelemetry-collector-contrib)\//{s/ v0\.[0-9]+\.[0-9]+( |\$)/ $core_beta\1/;s/ v1\.[0-9]+\.[0-9]+( |\$)/ $core_stable\1/}" \
      "$out/replaces/$dir/go.mod"
  done < <(replaced_modules)
}

if [ -x "$bin" ] && [ -z "${OBS_LAB_COLLECTOR_FORCE:-}" ]; then
  lab_log "collector binary cached: $bin"
else
  lab_log "verifying component modules on the Go proxy"
  verify_modules || { lab_log "a pinned module is missing; fix $manifest"; exit 2; }
  mkdir -p "$out"
  rm -rf "$out/_build"
  cp "$manifest" "$out/manifest.yaml"
  fetch_replaces
  lab_log "building the collector (ocb $BUILDER_VERSION, $go_version); log: $out/build.log"
  start=$(date +%s)
  # CGO off, -trimpath and -s -w are the builder's defaults; set explicitly for clarity.
  if ! (cd "$out" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" nice -n 5 /usr/bin/time -v -o "$out/time.txt" \
        "$builder" --config "$out/manifest.yaml" --ldflags="-s -w" --verbose) >"$out/build.log" 2>&1; then
    tail -n 40 "$out/build.log" >&2
    lab_log "collector build failed (full log: $out/build.log)"
    exit 1
  fi
  cp "$out/_build/otelcol" "$bin.tmp" && mv "$bin.tmp" "$bin"
  rm -rf "$out/_build"   # generated sources; the Go build cache keeps the compiled packages
  lab_log "collector built in $(( $(date +%s) - start ))s, peak RSS $(sed -nE 's/.*Maximum resident set size \(kbytes\): ([0-9]+)/\1/p' "$out/time.txt") KiB"
fi

# 3. Canonical component names (what the init helper renders configs with) and a config check.
"$bin" components >"$out/components.yaml"
# The pre-rename type names still accepted as aliases (checked with the real binary).
aliases_cfg="$out/aliases.yaml"
cat >"$aliases_cfg" <<'YAML'
receivers:
  otlp: {protocols: {http: {endpoint: 127.0.0.1:4318}}}
  filelog: {include: [/var/log/obs-stack-alias-check.log]}
processors:
  resourcedetection: {detectors: [env]}
exporters:
  otlphttp: {endpoint: "http://127.0.0.1:4318"}
  otlp: {endpoint: "127.0.0.1:4317"}
connectors:
  spanmetrics: {}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [resourcedetection], exporters: [otlphttp, otlp, spanmetrics]}
    metrics: {receivers: [spanmetrics], exporters: [otlphttp]}
    logs: {receivers: [filelog], exporters: [otlphttp]}
YAML
aliases_ok=0
"$bin" validate --config "$aliases_cfg" >/dev/null 2>&1 && aliases_ok=1
python3 - "$out/components.yaml" "$src/components.txt" "$OTELCOL_VERSION" "$aliases_ok" <<'PY'
import sys, re
src, dst, version, aliases_ok = sys.argv[1:]
kinds, cur, out = ("receivers", "processors", "exporters", "connectors", "extensions", "providers"), None, {}
for line in open(src):
    m = re.match(r"^(\w+):\s*$", line)
    if m:
        cur = m.group(1) if m.group(1) in kinds else None
        continue
    m = re.match(r"^\s+- (?:name|scheme): (\S+)", line)
    if cur and m:
        out.setdefault(cur, []).append(m.group(1))
text = [f"# Canonical component type names of obs-lab/otelcol:{version} (`otelcol components`),",
        "# generated by tests/lab/build-collector.sh. Render collector configs with these names.",
        "# Format: <kind> <name>"]
if aliases_ok == "1":
    text.append("# Deprecated aliases the binary still accepts (validated at build time): otlp = exporter")
    text.append("# otlp_grpc, otlphttp = otlp_http, filelog = file_log, resourcedetection = resource_detection,")
    text.append("# spanmetrics = span_metrics. Prefer the canonical names below.")
for k in kinds:
    for n in out.get(k, []):
        text.append(f"{k[:-1]} {n}")
new = "\n".join(text) + "\n"
try:
    old = open(dst).read()
except FileNotFoundError:
    old = None
if old != new:
    open(dst, "w").write(new)
    print(f"[lab] updated {dst}", file=sys.stderr)
PY
tmpd=$(mktemp -d)
trap 'rm -rf "$tmpd"' EXIT
# validate resolves paths only at start-up, so the config's /data path needs no directory here.
"$bin" validate --config "$src/test-config.yaml" >"$tmpd/validate.log" 2>&1 || {
  cat "$tmpd/validate.log" >&2; lab_log "test-config.yaml does not validate"; exit 1; }

# 4. The image, keyed by the binary, the image inputs and the base image.
bin_sum=$(sha256sum "$bin" | cut -c1-24)
img_hash=$(lab_hash_dir "$src" "bin=$bin_sum" "base=$(lab_base_id)")
if [ "$(lab_image_hash "$IMAGE")" != "$img_hash" ]; then
  cp "$src/Dockerfile" "$src/test-config.yaml" "$tmpd/"
  cp "$bin" "$tmpd/otelcol"
  chmod 0755 "$tmpd/otelcol"; chmod 0644 "$tmpd/test-config.yaml"
fi
lab_build_cached "$IMAGE" "$tmpd" "$img_hash" --build-arg "BASE_IMAGE=$LAB_BASE_IMAGE"
lab_log "collector image: $IMAGE (binary $bin)"
