#!/usr/bin/env bash
# A real single-node Slurm cluster for the tests of nbimages.slurm (Debian's slurm-wlm, munge, runc).
#
#   scripts/slurm.sh install   apt-get install what is missing (root only)
#   scripts/slurm.sh start     install if needed, then start what is not running (idempotent)
#   scripts/slurm.sh stop      stop only what this script started
#   scripts/slurm.sh status    say what answers
#   scripts/slurm.sh env       print SLURM_CONF=... (eval "$(scripts/slurm.sh env)")
#
# Everything lives under one state directory (NBIMAGES_SLURM_DIR, default
# /var/tmp/nbimages-slurm): a munge key and socket of its own (the host's munged, if any, is
# left alone), slurm.conf and oci.conf, spool, state and logs. The tests find the cluster
# through $NBIMAGES_SLURM_DIR/slurm.conf (tests/slurm_cluster.py). Daemons listen on their own
# ports on 127.0.0.1; the one node is "localhost" with 8 CPUs declared on whatever the machine
# has (config_overrides), so an array of 8 small tasks runs at once.
#
# `srun --container=BUNDLE` runs OCI bundles through runc's *run* mode (create/start leaves a
# parked `runc init` here, crun fails on hybrid cgroups); containers are named
# nbimages-slurm.<node>.<uid>.<job>.<step>.<task> under the runc root $STATE_DIR/runc.
set -euo pipefail

STATE_DIR="${NBIMAGES_SLURM_DIR:-/var/tmp/nbimages-slurm}"
CTLD_PORT="${NBIMAGES_SLURMCTLD_PORT:-16817}"
SLURMD_PORT="${NBIMAGES_SLURMD_PORT:-16818}"
CONF="$STATE_DIR/slurm.conf"
MUNGE_SOCKET="$STATE_DIR/munge/munge.socket"
PREFIX="nbimages-slurm"

. "$(dirname "$0")/daemon-lib.sh"
log() { printf 'slurm: %s\n' "$*" >&2; }

install_missing() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurm-wlm)
  command -v munged >/dev/null || missing+=(munge)
  command -v runc >/dev/null || missing+=(runc)
  apt_install ${missing[@]+"${missing[@]}"}
}

alive() { [ -f "$STATE_DIR/$1.pid" ] && kill -0 "$(cat "$STATE_DIR/$1.pid")" 2>/dev/null; }
munge_up() { alive munged && [ -S "$MUNGE_SOCKET" ]; }
cluster_up() {
  SLURM_CONF="$CONF" timeout 10 sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'
}

write_config() {
  mkdir -p "$STATE_DIR"/{munge,spool,state,log,runc,bin}
  chmod 0700 "$STATE_DIR/munge"
  if [ ! -s "$STATE_DIR/munge/munge.key" ]; then
    (umask 077; head -c 1024 /dev/urandom >"$STATE_DIR/munge/munge.key")
  fi
  # runc's `state` fails for a container that already went: Slurm wants JSON either way.
  cat >"$STATE_DIR/bin/runc-query" <<SH
#!/bin/sh
runc --rootless=true --root="$STATE_DIR/runc" state "\$1" 2>/dev/null || echo '{"status":"stopped"}'
SH
  chmod 0755 "$STATE_DIR/bin/runc-query"
  local id="$PREFIX.%n.%u.%j.%s.%t"
  cat >"$STATE_DIR/oci.conf" <<CONF
RunTimeQuery="$STATE_DIR/bin/runc-query $id"
RunTimeKill="runc --rootless=true --root=$STATE_DIR/runc kill -a $id SIGKILL"
RunTimeDelete="runc --rootless=true --root=$STATE_DIR/runc delete --force $id"
RunTimeRun="runc --rootless=true --root=$STATE_DIR/runc run $id -b %b"
CONF
  cat >"$CONF" <<CONF
ClusterName=nbimages
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool/%n
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE_DIR/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=3600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 RealMemory=4000 State=UNKNOWN
PartitionName=nbimages Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
}

start_munge() {
  if munge_up; then return 0; fi
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  log "starting munged (socket $MUNGE_SOCKET)"
  munged --force --key-file="$STATE_DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$STATE_DIR/munged.pid" --log-file="$STATE_DIR/log/munged.log" \
    --seed-file="$STATE_DIR/munge/munge.seed"
  touch "$STATE_DIR/munged.ours"
  wait_for munged munge_up 20 "$STATE_DIR/log/munged.log"
}

start_daemon() {  # start_daemon NAME ARGS...
  local name=$1; shift
  if alive "$name"; then return 0; fi
  log "starting $name"
  SLURM_CONF="$CONF" "$@"
  # Both daemonise and write their pid file themselves; the mark says this script started them.
  touch "$STATE_DIR/$name.ours"
}

stop_one() {  # only what this script started (its mark)
  [ -f "$STATE_DIR/$1.ours" ] || return 0
  stop_pidfile "$1" "$STATE_DIR/$1.pid"
  rm -f "$STATE_DIR/$1.ours"
}

case "${1:-start}" in
  install) install_missing ;;
  start)
    install_missing
    if cluster_up && munge_up; then log "cluster already answers (SLURM_CONF=$CONF)"; exit 0; fi
    write_config
    start_munge
    start_daemon slurmctld slurmctld -f "$CONF"
    start_daemon slurmd slurmd -f "$CONF" -N localhost
    wait_for slurmd cluster_up 60 "$STATE_DIR/log/slurmd.log"
    # A node that was down when the controller last saw it stays down without this.
    SLURM_CONF="$CONF" scontrol update nodename=localhost state=resume 2>/dev/null || true
    log "cluster up: SLURM_CONF=$CONF"
    ;;
  stop)
    # Jobs first, so that no container outlives the cluster.
    if cluster_up; then SLURM_CONF="$CONF" scancel --full --quiet -p nbimages 2>/dev/null || true; fi
    stop_one slurmd
    stop_one slurmctld
    stop_one munged
    ;;
  status)
    munge_up && echo "munge: up ($MUNGE_SOCKET)" || echo "munge: down"
    cluster_up && echo "slurm: up (SLURM_CONF=$CONF)" || echo "slurm: down"
    ;;
  env) echo "SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
