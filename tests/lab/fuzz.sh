#!/usr/bin/env bash
# Bounded fuzzing of the backend's OTLP decoding and error fingerprinting: the cargo-fuzz
# targets in fuzz/, built with nightly rustc's sanitizer-coverage flags and libFuzzer from
# libfuzzer-sys (no cargo-fuzz install needed), each run for OBS_STACK_FUZZ_SECONDS (30).
# The corpus grows in target/fuzz/corpus across runs. Skipped, saying why, without nightly.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${OBS_STACK_FUZZ_SECONDS:-30}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "[fuzz] skipped: no nightly toolchain (rustup toolchain install nightly)" >&2
  exit 0
fi
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the coverage flags off build scripts and proc macros (as cargo-fuzz does).
HOST=$(rustc +nightly -vV | sed -n 's/^host: //p')
cargo +nightly build --quiet --manifest-path fuzz/Cargo.toml --target-dir target/fuzz --target "$HOST" --bins
for t in otlp_decode error_fingerprint; do
  mkdir -p "target/fuzz/corpus/$t"
  echo "[fuzz] $t for ${SECS}s" >&2
  log=$(mktemp)
  rc=0
  "target/fuzz/$HOST/debug/$t" -max_total_time="$SECS" -rss_limit_mb=2048 -print_final_stats=1 \
    "target/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  grep -E "^(stat::number_of_executed_units|SUMMARY)" "$log" >&2 || true
  if [ "$rc" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "[fuzz] $t failed (exit $rc): a crash or a leak, see above" >&2
    exit 1
  fi
  rm -f "$log"
done
