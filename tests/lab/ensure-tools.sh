#!/usr/bin/env bash
# Installs the host tools the lab's tests use (Debian packages), idempotently:
# ShellCheck (installer lint), promtool and amtool (Prometheus/Alertmanager config checks),
# wrk (benchmarks). Prints what to install when not root on Debian.
set -euo pipefail

main() {
  local want=(shellcheck:shellcheck promtool:prometheus amtool:prometheus-alertmanager wrk:wrk)
  local missing=() pair
  for pair in "${want[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    printf '[lab] missing tools; install: %s\n' "${missing[*]}" >&2
    exit 3
  fi
  printf '[lab] installing %s from Debian\n' "${missing[*]}" >&2
  apt-get update -q >/dev/null
  # Debian's prometheus packages would start services under systemd; there is none here, and
  # policy-rc.d keeps them stopped where there is one: the lab runs its own containers.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

main "$@"
