#!/usr/bin/env bash
# Starts and stops a real one-node Slurm cluster on this machine, for the `slurm` tests: munged,
# slurmctld and slurmd run as plain daemons (no systemd), with all state under one directory.
#
# Usage: scripts/slurm/local-cluster.sh up|down|status     (as root; CI runs `up` before ctest)
#   up      installs slurm-wlm and munge when missing (apt-get), makes sure munged runs, writes
#           slurm.conf, starts slurmctld and slurmd and waits (60 s at most) for the node to be
#           idle. Idempotent: when the daemons already run with the same config it only checks.
#   down    cancels all jobs, stops slurmd and slurmctld, stops munged only if `up` started it,
#           removes the state directory and the slurm.conf this script wrote.
#   status  prints sinfo; exit 0 when the controller answers, 1 otherwise.
# Environment: DPT_SLURM_DIR (/tmp/dpt-slurm): state, spool, logs and pid files.
#   SLURM_CONF (/etc/slurm/slurm.conf): where the config goes; Slurm's tools read it from there.
#   The file is written only when absent or when it carries this script's marker line, so a
#   site's own config is never overwritten (exit 2 instead).
# Exit codes: 0 fine, 1 a daemon or job failed at run time, 2 a configuration problem.
#
# Facts that matter to tests (measured on Debian 12's Slurm 22.05.8 and Open MPI 4.1.4):
# - One node named `hostname -s`, at 127.0.0.1, with the machine's CPUs; one partition `debug`
#   (default, no time limit). SelectTypeParameters=CR_CPU: memory is not a consumable, so jobs
#   without --mem do not take the whole node; CPUs are, and OverSubscribe=YES shares them only
#   with jobs that ask for --oversubscribe.
# - No accounting daemon: `sacct` does not work. `squeue -t all -j N` and `scontrol show job N`
#   know a job for MinJobAge (300 s) after it ends (plain `squeue -j N` shows only live jobs);
#   finished jobs are also logged to $DPT_SLURM_DIR/jobcomp.log. Job ids restart at 1 after
#   `down`, which removes the state.
# - `scontrol requeue N` puts a running batch job back to PENDING (Reason=BeginTime) for
#   cred_expire, 120 s; `scontrol update JobId=N StartTime=now` makes it eligible at once. The
#   rerun sees SLURM_RESTART_COUNT=1 (unset before any requeue), in srun tasks too, and its
#   output file is truncated unless it was submitted with --open-mode=append.
# - Signals: `scancel --signal=USR2 N` reaches every process of the job's srun steps, not the
#   batch shell; processes that mpirun starts inside the batch script are in no step (mpirun on
#   one node forks them), so nothing reaches them. `--batch` signals the batch shell alone;
#   `--full` also its process group (so a foreground/background mpirun, which forwards USR1/USR2
#   to its ranks). `#SBATCH --signal=USR2@N` goes to the steps like scancel, `B:USR2@N` to the
#   batch shell only, and may come up to 60 s earlier than N seconds before the limit.
# - `squeue -h -j N -o %e` prints local time as 2026-11-25T11:02:18 (start + time limit while
#   running), NONE when running without a limit, N/A while pending; SLURM_TIME_FORMAT=%s makes
#   it epoch seconds. SLURM_JOB_END_TIME is not set in this version.
# - srun --mpi=pmix works (Slurm's PMIx v4 plugin); tasks get SLURM_PROCID/LOCALID/STEP_ID.
#   Ranks started by mpirun inside sbatch all inherit the batch shell's SLURM_PROCID=0 and
#   SLURM_LOCALID=0: use OMPI_COMM_WORLD_RANK / _LOCAL_RANK there.
set -euo pipefail

readonly marker="# Written by dptrain scripts/slurm/local-cluster.sh; safe to overwrite or remove."
readonly dir="${DPT_SLURM_DIR:-/tmp/dpt-slurm}"
readonly conf="${SLURM_CONF:-/etc/slurm/slurm.conf}"
readonly cluster="dpt-local"
readonly partition="debug"
readonly wait_s=60

say() { echo "local-cluster: $*" >&2; }
# die CODE MESSAGE: one clear line, then exit with CODE (2 configuration, 1 run time).
die() {
  local code=$1
  shift
  echo "local-cluster: error: $*" >&2
  exit "$code"
}

node_name() { hostname -s; }

# pid_alive PIDFILE NAME: the process named in PIDFILE runs and is NAME.
pid_alive() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"$2"* ]]
}

# stop_pidfile PIDFILE NAME: TERM, then KILL after 15 s.
stop_pidfile() {
  local pidfile=$1 name=$2 pid i
  pid_alive "$pidfile" "$name" || return 0
  pid=$(<"$pidfile")
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  say "$name did not stop in 15 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

install_missing() {
  local missing=()
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null ||
    missing+=(slurm-wlm)
  command -v munged >/dev/null || missing+=(munge)
  # Slurm's mpi/pmix plugin dlopens libpmix at slurmd start-up, and Debian's slurm packages do
  # not depend on it: without it every `srun --mpi=pmix` step fails to launch.
  dpkg-query -W -f='${Status}' libpmix2 2>/dev/null | grep -q "install ok installed" ||
    missing+=(libpmix2)
  ((${#missing[@]} == 0)) && return 0
  [[ $(id -u) -eq 0 ]] || die 2 "missing ${missing[*]}; run as root or apt-get install them"
  say "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null || die 1 "apt-get update failed"
  apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null ||
    die 1 "apt-get install ${missing[*]} failed"
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  local key=/etc/munge/munge.key i
  if [[ ! -s $key ]]; then
    say "creating $key"
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile="$key" || die 1 "mungekey --create failed"
    else
      dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
    fi
    chown munge:munge "$key"
    chmod 0400 "$key"
  fi
  if munge_works; then return 0; fi
  # Debian's systemd unit creates these; in a container nothing does.
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1 ||
    runuser -u munge -- /usr/sbin/munged --force </dev/null >/dev/null 2>&1 ||
    die 1 "munged did not start; read /var/log/munge/munged.log"
  mkdir -p "$dir"
  touch "$dir/munged.ours"
  for ((i = 0; i < 50; i++)); do
    munge_works && return 0
    sleep 0.1
  done
  die 1 "munge -n | unmunge fails; read /var/log/munge/munged.log"
}

# The config for this machine, on stdout. Topology from `slurmd -C` (what slurmd will check
# against), falling back to nproc; RealMemory 95% of the machine's so slurmd never drains it.
render_conf() {
  local node line cpus mem topo=""
  node=$(node_name)
  line=$(slurmd -C 2>/dev/null | head -n 1 || true)
  cpus=$(sed -n 's/.*\bCPUs=\([0-9]*\).*/\1/p' <<<"$line")
  mem=$(sed -n 's/.*\bRealMemory=\([0-9]*\).*/\1/p' <<<"$line")
  [[ -n $cpus ]] || cpus=$(nproc)
  [[ -n $mem ]] || mem=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
  local re='(Boards=[0-9]+ SocketsPerBoard=[0-9]+ CoresPerSocket=[0-9]+ ThreadsPerCore=[0-9]+)'
  if [[ $line =~ $re ]]; then topo=" ${BASH_REMATCH[1]}"; fi
  cat <<EOF
$marker
# A one-node test cluster; state, logs and pid files under $dir.
ClusterName=$cluster
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MailProg=/bin/true
ReturnToService=2
JobRequeue=1
MinJobAge=300
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus$topo RealMemory=$((mem * 95 / 100)) State=UNKNOWN
PartitionName=$partition Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}

# Writes $conf when absent or ours; returns 0 when it changed.
write_conf() {
  local new=$1
  if [[ -e $conf ]] && ! grep -qxF "$marker" "$conf"; then
    die 2 "$conf exists and was not written by this script; not overwriting a site config" \
      "(move it away, or set SLURM_CONF to another path and export it for the tests)"
  fi
  if [[ -e $conf ]] && [[ $(<"$conf") == "$new" ]]; then return 1; fi
  say "writing $conf"
  mkdir -p "$(dirname "$conf")"
  printf '%s\n' "$new" >"$conf"
  return 0
}

# Bounded: a client talking to something that accepts but never answers would wait for minutes.
ctld_answers() { [[ $(timeout 5 scontrol -o ping 2>/dev/null) == *"is UP"* ]]; }

node_state() { timeout 5 sinfo -h -n "$(node_name)" -o %T 2>/dev/null | head -n 1; }

start_daemons() {
  local t0
  mkdir -p "$dir/state" "$dir/spool"
  if ! pid_alive "$dir/slurmctld.pid" slurmctld; then
    say "starting slurmctld (log $dir/slurmctld.log)"
    # -c (cold start) on an empty state directory, else it recovers the jobs saved there.
    local flags=()
    [[ -n $(ls -A "$dir/state") ]] || flags=(-c)
    slurmctld -f "$conf" "${flags[@]}" </dev/null >>"$dir/slurmctld.out" 2>&1 ||
      die 1 "slurmctld failed to start; read $dir/slurmctld.out and $dir/slurmctld.log"
  fi
  t0=$SECONDS
  until ctld_answers; do
    pid_alive "$dir/slurmctld.pid" slurmctld || ((SECONDS - t0 < 3)) ||
      die 1 "slurmctld exited; read $dir/slurmctld.log"
    ((SECONDS - t0 < 30)) || die 1 "slurmctld does not answer after 30 s; read $dir/slurmctld.log"
    sleep 0.2
  done
  if ! pid_alive "$dir/slurmd.pid" slurmd; then
    say "starting slurmd (log $dir/slurmd.log)"
    slurmd -f "$conf" </dev/null >>"$dir/slurmd.out" 2>&1 ||
      die 1 "slurmd failed to start; read $dir/slurmd.out and $dir/slurmd.log"
  fi
}

# Waits for the node to take jobs; resumes it once if it comes up down or drained.
wait_node_idle() {
  local node state="" resumed=0 t0=$SECONDS
  node=$(node_name)
  while ((SECONDS - t0 < wait_s)); do
    state=$(node_state)
    case $state in
      idle | mixed | allocated | completing) say "node $node is $state"; return 0 ;;
      *'*') ;; # not responding (yet)
      down* | drain* | fail*)
        if ((resumed == 0)); then
          say "node $node is $state; resuming it"
          scontrol update NodeName="$node" State=RESUME || true
          resumed=1
        fi
        ;;
    esac
    pid_alive "$dir/slurmd.pid" slurmd || ((SECONDS - t0 < 3)) ||
      die 1 "slurmd exited; read $dir/slurmd.log (and $dir/slurmd.out)"
    sleep 0.5
  done
  die 1 "node $node not idle after ${wait_s}s (state '${state:-unknown}');" \
    "read $dir/slurmd.log and $dir/slurmctld.log"
}

pmix_step_runs() {
  timeout 60 srun --mpi=pmix -N1 -n1 -t 1 true </dev/null >/dev/null 2>&1
}

cmd_up() {
  local new
  [[ $(id -u) -eq 0 ]] || die 2 "run as root (SlurmUser=root, munged is started as munge)"
  install_missing
  start_munge
  new=$(render_conf)
  if write_conf "$new"; then
    # A changed config (say, another CPU count) needs fresh daemons.
    stop_pidfile "$dir/slurmd.pid" slurmd
    stop_pidfile "$dir/slurmctld.pid" slurmctld
  fi
  export SLURM_CONF="$conf"
  start_daemons
  wait_node_idle
  # A slurmd started before libpmix was installed lists pmix but cannot launch a pmix step;
  # one real step proves it, and a fresh slurmd picks the library up.
  if ! pmix_step_runs; then
    say "srun --mpi=pmix cannot launch a step; restarting slurmd"
    stop_pidfile "$dir/slurmd.pid" slurmd
    start_daemons
    wait_node_idle
    pmix_step_runs || die 1 "srun --mpi=pmix cannot launch a step; read $dir/slurmd.log" \
      "(package libpmix2 and slurm-wlm-basic-plugins provide the plugin)"
  fi
  say "up: partition $partition on $(node_name); SLURM_CONF=$conf, logs in $dir"
}

cmd_down() {
  local i jobs=()
  export SLURM_CONF="$conf"
  if [[ -e $conf ]] && ctld_answers; then
    mapfile -t jobs < <(timeout 10 squeue -h -o %i 2>/dev/null)
    if ((${#jobs[@]} > 0)); then
      say "cancelling jobs ${jobs[*]}"
      timeout 10 scancel "${jobs[@]}" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do
        [[ -z $(timeout 5 squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null) ]] && break
        sleep 0.1
      done
    fi
  fi
  stop_pidfile "$dir/slurmd.pid" slurmd
  stop_pidfile "$dir/slurmctld.pid" slurmctld
  if [[ -e $dir/munged.ours ]]; then
    say "stopping munged (started by up)"
    runuser -u munge -- /usr/sbin/munged --stop >/dev/null 2>&1 || true
  fi
  if [[ -e $conf ]] && grep -qxF "$marker" "$conf"; then rm -f "$conf"; fi
  rm -rf "$dir"
  say "down"
}

cmd_status() {
  export SLURM_CONF="$conf"
  if [[ -e $conf ]] && ctld_answers; then
    sinfo
    return 0
  fi
  say "cluster not answering (config $conf; logs in $dir)"
  return 1
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
