#!/usr/bin/env bash
# Makes sure a Docker engine answers, installing Debian's docker.io and starting dockerd
# when we are root on Debian. Idempotent: safe to run again with the daemon already up.
# Copes with a stale /var/run/docker.pid left by a killed daemon.
set -euo pipefail

log() { printf '[lab] %s\n' "$*" >&2; }

docker_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "missing: ${missing[*]}; install them (Debian: sudo apt-get install ${missing[*]}) and start dockerd"
    exit 3
  fi
  log "installing ${missing[*]} from Debian"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

# A live dockerd with this pid: not gone, not a zombie left by a killed session, and not
# another program that reused the pid.
dockerd_alive() {
  local pid=$1 state
  [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
  [ "$state" != Z ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]
}

any_dockerd_alive() {
  local pid
  for pid in $(pgrep -x dockerd || true); do
    dockerd_alive "$pid" && return 0
  done
  return 1
}

start_dockerd() {
  local pidfile=/var/run/docker.pid
  if [ -f "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && dockerd_alive "$pid"; then
      log "dockerd (pid $pid) is running but not answering yet"
    else
      log "removing stale $pidfile (pid ${pid:-?} is gone)"
      rm -f "$pidfile"
    fi
  fi
  local attempt
  for attempt in 1 2; do
    if ! any_dockerd_alive; then
      # containerd managed by a killed dockerd can outlive it for a moment and leave its pid
      # file behind; a new dockerd then waits on the dying one. Clear what is stale.
      local cpid
      cpid=$(cat /var/run/docker/containerd/containerd.pid 2>/dev/null || true)
      if [ -n "$cpid" ] && ! kill -0 "$cpid" 2>/dev/null; then
        rm -f /var/run/docker/containerd/containerd.pid
      fi
      mkdir -p /var/log
      log "starting dockerd (log: /var/log/obs-stack-dockerd.log)"
      nohup dockerd >/var/log/obs-stack-dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do
      docker_answers && return 0
      any_dockerd_alive || break
      sleep 1
    done
    log "dockerd did not come up (attempt $attempt); last lines of its log:"
    tail -n 5 /var/log/obs-stack-dockerd.log >&2 || true
    sleep 3
  done
  exit 3
}

main() {
  if docker_answers; then
    return 0
  fi
  install_packages
  if [ "$(id -u)" != 0 ]; then
    log "the Docker engine is not answering; start it (sudo systemctl start docker) or set DOCKER_HOST"
    exit 3
  fi
  start_dockerd
  log "Docker engine $(docker version --format '{{.Server.Version}}') is up"
}

main "$@"
