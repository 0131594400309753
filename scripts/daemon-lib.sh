# Shared by scripts/services.sh and scripts/slurm.sh (sourced): waiting for a daemon to answer,
# stopping one by its pid file, installing missing Debian packages. The caller defines log().

wait_for() {  # wait_for NAME CHECK_FN SECONDS LOGFILE
  local i
  for ((i = 0; i < $3 * 5; i++)); do
    "$2" && return 0
    sleep 0.2
  done
  log "$1 did not come up in $3 s; see $4"
  tail -n 20 "$4" >&2 || true
  return 1
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE: TERM, up to 10 s, then KILL; removes the file
  [ -f "$2" ] || return 0
  local pid; pid=$(cat "$2")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $1 ($pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$2"
}

apt_install() {  # apt_install PACKAGE...: as root; otherwise say what is missing and fail
  [ $# -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "missing $* and not root: install them with apt-get, or run as root"
    return 1
  fi
  log "installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
