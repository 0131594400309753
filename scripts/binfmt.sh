#!/usr/bin/env bash
# Foreign-architecture containers for the multi-platform tests: Debian's qemu-user-static and
# binfmt-support register binfmt_misc handlers (aarch64 among them) with the F (fix binary)
# flag, so the engine runs linux/arm64 containers on this amd64 host through QEMU.
#
#   scripts/binfmt.sh start    install if needed, mount binfmt_misc, register aarch64 (idempotent)
#   scripts/binfmt.sh stop     nothing to stop: registered handlers stay (other tools use them)
#   scripts/binfmt.sh status   say whether the aarch64 handler is registered
#
# Also adds the arm64 dpkg architecture, so tests can `apt-get download pkg:arm64` for the
# arm64 half of their two-platform bases.
set -euo pipefail

BINFMT=/proc/sys/fs/binfmt_misc
log() { printf 'binfmt: %s\n' "$*" >&2; }

registered() { [ -f "$BINFMT/qemu-aarch64" ] && grep -q '^enabled' "$BINFMT/qemu-aarch64"; }

status() {
  if registered; then
    log "aarch64 handler registered ($(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64"))"
    return 0
  fi
  log "aarch64 handler not registered: run scripts/binfmt.sh start as root"
  return 1
}

start() {
  if [ "$(id -u)" != 0 ]; then
    registered && { status; return 0; }
    log "not root: as root run scripts/binfmt.sh start (apt-get install qemu-user-static binfmt-support)"
    return 1
  fi
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    log "adding dpkg architecture arm64"
    dpkg --add-architecture arm64
    apt-get -o DPkg::Lock::Timeout=600 update -qq
  fi
  local missing=()
  [ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if [ ! -f "$BINFMT/register" ]; then
    log "mounting binfmt_misc"
    mount -t binfmt_misc binfmt_misc "$BINFMT"
  fi
  if ! registered; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  fi
  if ! registered; then
    # Without a running binfmt-support service (containers, no systemd): import the format
    # Debian ships and enable it by hand.
    update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  fi
  status
}

case "${1:-status}" in
  start) start ;;
  stop) log "handlers stay registered (shared with other tools)"; exit 0 ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
