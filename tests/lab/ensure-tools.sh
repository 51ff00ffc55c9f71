#!/usr/bin/env bash
# Installs the host tools the lab's tests use (Debian packages), idempotently:
# ShellCheck (installer lint), promtool and amtool (Prometheus/Alertmanager config checks),
# wrk (benchmarks), chromium (the UI's browser tests, driven headless by playwright-core). Prints what to install when not root on Debian.
set -euo pipefail

# Toolchains the fixture, agent and collector builds use on the host. The machines this lab
# targets ship them; Debian's own versions are too old for some (Go >= 1.25 for ocb), so they
# are checked, not installed.
check_toolchains() {
  local missing=() t
  for t in python3 node npm javac jar mvn go cargo; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  python3 -m pip --version >/dev/null 2>&1 || missing+=("pip (python3 -m pip)")
  if [ "${#missing[@]}" -gt 0 ]; then
    printf '[lab] missing toolchains: %s (need python3.11+pip, node 20+npm, JDK 17+maven, go >= 1.25, rust)\n' "${missing[*]}" >&2
    exit 3
  fi
}

main() {
  check_toolchains
  local want=(shellcheck:shellcheck promtool:prometheus amtool:prometheus-alertmanager wrk:wrk tmux:tmux chromium:chromium)
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
