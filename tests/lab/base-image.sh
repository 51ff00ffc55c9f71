#!/usr/bin/env bash
# Builds the lab's root image without any registry: a debootstrap'd Debian bookworm
# (minbase) root filesystem imported with `docker import` as obs-lab/base:bookworm.
# Cached: skipped when the image exists with the same recipe hash.
set -euo pipefail

IMAGE=${OBS_LAB_BASE_IMAGE:-obs-lab/base:bookworm}
MIRROR=${OBS_LAB_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
INCLUDE=ca-certificates,curl,procps,iproute2,netbase,tini
RECIPE="v1 $SUITE $MIRROR $INCLUDE"

log() { printf '[lab] %s\n' "$*" >&2; }

main() {
  local want have
  want=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-16)
  have=$(docker image inspect -f '{{index .Config.Labels "io.obs-stack.recipe"}}' "$IMAGE" 2>/dev/null || true)
  if [ "$have" = "$want" ]; then
    log "$IMAGE is up to date"
    return 0
  fi
  command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap)"; exit 3; }
  ROOTFS=$(mktemp -d /var/tmp/obs-lab-rootfs.XXXXXX)
  trap 'rm -rf "$ROOTFS" "$ROOTFS.log"' EXIT
  local root=$ROOTFS
  log "debootstrap $SUITE into $root (a few minutes on a cold machine)"
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 \
    || { tail -n 30 "$root.log" >&2; exit 1; }
  rm -f "$root.log"
  # Trim what containers never need and keep apt usable inside derived builds.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
  printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" >"$root/etc/apt/sources.list"
  tar -C "$root" -c . | docker import \
    -c "LABEL io.obs-stack.recipe=$want" \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    -c 'CMD ["bash"]' - "$IMAGE" >/dev/null
  log "built $IMAGE"
}

main "$@"
