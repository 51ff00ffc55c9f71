#!/usr/bin/env bash
# Builds obs-stack release archives and the files install.sh downloads, laid out like the
# release server (cargo-dist / rustup style):
#
#   <base>/install.sh                                  the installer
#   <base>/latest                                      a text file: the newest version, e.g. 0.1.0
#   <base>/<version>/obs-stack-<target>.tar.gz         one archive per target
#   <base>/<version>/SHA256SUMS                        sha256sum(1) format, one line per archive
#   <base>/<version>/install.sh                        the installer as released with <version>
#
# Each archive holds obs-stack-<target>/{obs-stack, obs-detect -> obs-stack,
# obs-inject -> obs-stack, README.md if present}. Archives are reproducible: the same binary
# gives the same bytes (sorted entries, fixed mtime/owner, gzip -n), so re-packaging does not
# change SHA256SUMS and a re-run of install.sh stays a no-op.
#
# Usage: installer/package.sh            build release binaries and package every target
#
# Environment:
#   OBS_STACK_DIST_DIR   output folder (default: dist/ at the repo root; gitignored)
#   OBS_STACK_TARGETS    space-separated targets (default: x86_64-unknown-linux-gnu, plus
#                        x86_64-unknown-linux-musl when its rustup target is installed)
#   OBS_STACK_BINARY     package this prebuilt binary instead of building (tests use the debug
#                        binary); it is packaged for OBS_STACK_BINARY_TARGET (default: the
#                        rustc host triple) only
#   SOURCE_DATE_EPOCH    mtime recorded in archives (default: the last commit's time, else 0)
set -euo pipefail

log() { printf '[package] %s\n' "$*" >&2; }
die() { printf '[package] error: %s\n' "$*" >&2; exit 1; }

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# The [package] version from Cargo.toml.
crate_version() {
  awk '
    /^\[/ { in_pkg = ($0 == "[package]") ; next }
    in_pkg && /^version[[:space:]]*=/ {
      v = $0; sub(/^version[[:space:]]*=[[:space:]]*"/, "", v); sub(/".*$/, "", v); print v; exit
    }' "$1/Cargo.toml"
}

host_triple() { rustc -vV | sed -n 's/^host: //p'; }

default_targets() {
  local targets="x86_64-unknown-linux-gnu"
  if command -v rustup >/dev/null 2>&1 &&
    rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    targets="$targets x86_64-unknown-linux-musl"
  else
    log "x86_64-unknown-linux-musl is not installed (rustup target add x86_64-unknown-linux-musl); skipping it"
  fi
  printf '%s\n' "$targets"
}

build_target() { # root target -> prints the binary path
  local root=$1 target=$2
  local t0=$SECONDS
  log "cargo build --release --target $target (a cold build takes minutes; cargo's progress follows)"
  # Not --quiet: cargo's own progress (crate by crate) is the feedback on a long build.
  (cd "$root" && cargo build --release --locked --target "$target") >&2 ||
    die "cargo build failed for $target"
  log "built $target in $((SECONDS - t0))s"
  printf '%s\n' "$root/target/$target/release/obs-stack"
}

make_archive() { # binary target version outdir root
  local binary=$1 target=$2 version=$3 out=$4 root=$5
  local name="obs-stack-$target"
  local stage="$STAGE_ROOT/$target"
  rm -rf "$stage"
  mkdir -p "$stage/$name"
  install -m 0755 "$binary" "$stage/$name/obs-stack"
  ln -s obs-stack "$stage/$name/obs-detect"
  ln -s obs-stack "$stage/$name/obs-inject"
  if [ -f "$root/README.md" ]; then install -m 0644 "$root/README.md" "$stage/$name/README.md"; fi
  # The binary must run and say the version we are publishing.
  local said
  said=$("$stage/$name/obs-stack" --version) || die "$binary does not run"
  [ "$said" = "obs-stack $version" ] || die "$binary says '$said', expected 'obs-stack $version'"
  tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    -C "$stage" -cf - "$name" | gzip -n -6 >"$out/$name.tar.gz.tmp"
  mv -f "$out/$name.tar.gz.tmp" "$out/$name.tar.gz"
  log "wrote $out/$name.tar.gz ($(du -h "$out/$name.tar.gz" | cut -f1))"
}

main() {
  local root version dist out targets
  STAGE_ROOT=$(mktemp -d)
  trap 'rm -rf "$STAGE_ROOT"' EXIT
  root=$(repo_root)
  version=$(crate_version "$root")
  [ -n "$version" ] || die "cannot read the version from $root/Cargo.toml"
  dist=${OBS_STACK_DIST_DIR:-$root/dist}
  out="$dist/$version"
  mkdir -p "$out"
  if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)
  fi
  export SOURCE_DATE_EPOCH

  if [ -n "${OBS_STACK_BINARY:-}" ]; then
    [ -x "$OBS_STACK_BINARY" ] || die "OBS_STACK_BINARY=$OBS_STACK_BINARY is not an executable file"
    targets=${OBS_STACK_BINARY_TARGET:-$(host_triple)}
    make_archive "$OBS_STACK_BINARY" "$targets" "$version" "$out" "$root"
  else
    targets=${OBS_STACK_TARGETS:-$(default_targets)}
    local t bin
    for t in $targets; do
      bin=$(build_target "$root" "$t")
      make_archive "$bin" "$t" "$version" "$out" "$root"
    done
  fi

  # SHA256SUMS covers every archive present for this version (targets packaged earlier too).
  (cd "$out" && sha256sum -- obs-stack-*.tar.gz >SHA256SUMS.tmp && mv -f SHA256SUMS.tmp SHA256SUMS)
  install -m 0644 "$root/installer/install.sh" "$out/install.sh"
  install -m 0644 "$root/installer/install.sh" "$dist/install.sh"
  printf '%s\n' "$version" >"$dist/latest.tmp" && mv -f "$dist/latest.tmp" "$dist/latest"
  log "release $version in $dist:"
  (cd "$dist" && find . -type f | sort | sed 's/^/  /') >&2
  cat "$out/SHA256SUMS" >&2
}

main "$@"
