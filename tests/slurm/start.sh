#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (Debian's slurmctld, slurmd, slurm-client, munge; SLURM 22.05).
#
#   tests/slurm/start.sh RUNDIR     # as root; RUNDIR holds state, logs and the daemons' PID files
#   tests/slurm/stop.sh RUNDIR      # stops what this script started, removes the slurm.conf it wrote
#
# The config must be /etc/slurm/slurm.conf: every job runs its rule through a nested srun, and the
# Snakemake SLURM plugin strips every SLURM_* variable (SLURM_CONF included) before it. The script
# refuses to touch a slurm.conf it did not write. It records in RUNDIR/started the daemons it launched
# (munged is reused when one already answers) and exits 0 once `sinfo` shows the node idle.
# Exit codes: 0 up; 2 usage/not root/missing packages/foreign config (skip); 1 the cluster did not come up.
set -uo pipefail

RUNDIR=${1:?usage: start.sh RUNDIR}
CONF=/etc/slurm/slurm.conf
MARK="# written by galmap tests/slurm/start.sh"

die() { echo "start.sh: $2" >&2; exit "$1"; }
[ "$(id -u)" = 0 ] || die 2 "needs root (it starts munged, slurmctld and slurmd)"
for exe in slurmctld slurmd sinfo srun sbatch squeue munged; do
  command -v "$exe" >/dev/null || [ -x "/usr/sbin/$exe" ] || die 2 "$exe not installed (apt-get install slurmctld slurmd slurm-client munge)"
done
if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  die 2 "$CONF exists and was not written by this script; not touching a real cluster's config"
fi

mkdir -p "$RUNDIR/state" "$RUNDIR/spool" && RUNDIR=$(cd "$RUNDIR" && pwd) || die 1 "cannot create $RUNDIR"
: > "$RUNDIR/started"
unset SLURM_CONF  # the tests set SLURM_CONF=/dev/null for local runs; the cluster reads /etc/slurm/slurm.conf

# munge: a key owned by munge, munged running as munge (reuse one that answers)
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
chown munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key >/dev/null 2>&1 || die 1 "mungekey --create failed"
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  # munged runs as munge, which may not enter RUNDIR: its PID file goes to /run/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged-galmap-test.pid >"$RUNDIR/munged.out" 2>&1 \
    || die 1 "munged did not start: $(cat "$RUNDIR/munged.out")"
  echo munged >> "$RUNDIR/started"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null 2>&1 || die 1 "munged does not answer"
fi

# slurm.conf: one node with this machine's CPUs and a little less than its memory, one default partition
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p /etc/slurm
cat > "$CONF" <<EOF
$MARK (removed by tests/slurm/stop.sh)
ClusterName=galmap-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=300
ReturnToService=2
SchedulerParameters=sched_interval=1
StateSaveLocation=$RUNDIR/state
SlurmdSpoolDir=$RUNDIR/spool
SlurmctldPidFile=$RUNDIR/slurmctld.pid
SlurmdPidFile=$RUNDIR/slurmd.pid
SlurmctldLogFile=$RUNDIR/slurmctld.log
SlurmdLogFile=$RUNDIR/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

/usr/sbin/slurmctld -i || die 1 "slurmctld did not start: $(tail -5 "$RUNDIR/slurmctld.log" 2>/dev/null)"
echo slurmctld >> "$RUNDIR/started"
/usr/sbin/slurmd -N localhost || die 1 "slurmd did not start: $(tail -5 "$RUNDIR/slurmd.log" 2>/dev/null)"
echo slurmd >> "$RUNDIR/started"

for _ in $(seq 60); do
  state=$(sinfo -h -N -n localhost -o %t 2>/dev/null)
  [ "$state" = idle ] && { echo "start.sh: node localhost idle ($CPUS CPUs, ${MEM_MB} MB)"; exit 0; }
  sleep 0.5
done
die 1 "the node did not become idle (state '${state:-none}'); see $RUNDIR/slurmctld.log and $RUNDIR/slurmd.log"
