#!/usr/bin/env bash
# Stop the one-node cluster tests/slurm/start.sh RUNDIR started: only the daemons it launched (by their PID
# files in RUNDIR), then remove the /etc/slurm/slurm.conf it wrote, so that later snakemake starts do not
# stall on the SLURM plugin's `scontrol show config` against a controller that no longer answers.
set -uo pipefail

RUNDIR=${1:?usage: stop.sh RUNDIR}
CONF=/etc/slurm/slurm.conf
MARK="# written by galmap tests/slurm/start.sh"

stop_pid() {  # stop_pid NAME PIDFILE: TERM, wait up to 10 s, then KILL
  local name=$1 pidfile=$2 pid
  [ -s "$pidfile" ] || { echo "stop.sh: no PID file for $name ($pidfile)" >&2; return; }
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$pidfile"
}

if [ -f "$RUNDIR/started" ]; then
  # slurmd before slurmctld before munged (the reverse of the start)
  grep -qx slurmd "$RUNDIR/started" && stop_pid slurmd "$RUNDIR/slurmd.pid"
  grep -qx slurmctld "$RUNDIR/started" && stop_pid slurmctld "$RUNDIR/slurmctld.pid"
  grep -qx munged "$RUNDIR/started" && stop_pid munged /run/munge/munged-galmap-test.pid
  rm -f "$RUNDIR/started"
fi
if [ -f "$CONF" ] && grep -qF "$MARK" "$CONF"; then
  rm -f "$CONF"
fi
exit 0
