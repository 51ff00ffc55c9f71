# Shared by the bench scripts (sourced from the repository root).

# Sets OBS_STACK to an absolute path: $OBS_STACK if given, else the release or debug build.
bench_obs_stack() {
  OBS_STACK=${OBS_STACK:-}
  if [ -z "$OBS_STACK" ]; then
    local b
    for b in target/release/obs-stack target/debug/obs-stack; do
      [ -x "$b" ] && OBS_STACK=$PWD/$b && break
    done
  fi
  [ -x "${OBS_STACK:-}" ] || { echo "build obs-stack first (cargo build --release)" >&2; exit 2; }
}

# Sets VEGETA: $VEGETA if given, else the one on PATH or in GOPATH/bin.
bench_vegeta() {
  VEGETA=${VEGETA:-$(command -v vegeta || echo "$(go env GOPATH 2>/dev/null)/bin/vegeta")}
  [ -x "$VEGETA" ] || { echo "vegeta is required: go install github.com/tsenart/vegeta/v12@latest" >&2; exit 2; }
}
