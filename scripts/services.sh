#!/usr/bin/env bash
# Start (or stop) the real services the tests use: the Docker engine and a registry on 127.0.0.1.
#
#   scripts/services.sh install   apt-get install what is missing (root only)
#   scripts/services.sh start     install if needed, then start what is not running (idempotent)
#   scripts/services.sh stop      stop only what this script started
#   scripts/services.sh status    say what answers
#
# The engine runs with bridge networking and iptables off: containers use the host network
# or none, so no traffic leaves the loopback range. The registry listens on 127.0.0.1 only.
set -euo pipefail

STATE_DIR="${NBIMAGES_SERVICES_DIR:-/var/tmp/nbimages-services}"
REGISTRY_ADDR="${NBIMAGES_TEST_REGISTRY:-127.0.0.1:5000}"
DOCKER_SOCK="/var/run/docker.sock"

. "$(dirname "$0")/daemon-lib.sh"
log() { printf 'services: %s\n' "$*" >&2; }

engine_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
registry_up() { curl -fsS "http://${REGISTRY_ADDR}/v2/" >/dev/null 2>&1; }

install_missing() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v umoci >/dev/null || missing+=(umoci)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v curl >/dev/null || missing+=(curl)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v pigz >/dev/null || missing+=(pigz)
  command -v gpgv >/dev/null || missing+=(gpgv)  # apt steps check InRelease signatures
  # Tests fetch small .debs with apt-get download: they need the package lists.
  if [ "$(id -u)" = 0 ] && ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
    log "apt package lists are empty: apt-get update"
    apt-get update -qq
  fi
  apt_install ${missing[@]+"${missing[@]}"}
}

start_engine() {
  if engine_up; then log "engine already answers"; return 0; fi
  if [ -S "$DOCKER_SOCK" ] && ! engine_up; then rm -f "$DOCKER_SOCK"; fi
  # A stale pid file from a killed dockerd blocks a new one.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  log "starting dockerd"
  # containerd is started by dockerd itself when none runs.
  nohup dockerd --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
      --host "unix://$DOCKER_SOCK" >"$STATE_DIR/dockerd.log" 2>&1 &
  echo $! >"$STATE_DIR/dockerd.pid"
  wait_for dockerd engine_up 60 "$STATE_DIR/dockerd.log"
}

start_registry() {
  if registry_up; then log "registry already answers on $REGISTRY_ADDR"; return 0; fi
  mkdir -p "$STATE_DIR/registry-data"
  cat >"$STATE_DIR/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE_DIR/registry-data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
YML
  log "starting registry on $REGISTRY_ADDR"
  nohup docker-registry serve "$STATE_DIR/registry.yml" >"$STATE_DIR/registry.log" 2>&1 &
  echo $! >"$STATE_DIR/registry.pid"
  wait_for registry registry_up 30 "$STATE_DIR/registry.log"
}

stop_one() { stop_pidfile "$1" "$STATE_DIR/$1.pid"; }

mkdir -p "$STATE_DIR"
case "${1:-start}" in
  install) install_missing ;;
  start)
    install_missing
    start_engine
    start_registry
    ;;
  stop)
    stop_one registry
    stop_one dockerd
    ;;
  status)
    engine_up && echo "engine: up ($(docker version --format '{{.Server.Version}}'))" || echo "engine: down"
    registry_up && echo "registry: up on $REGISTRY_ADDR" || echo "registry: down"
    ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
