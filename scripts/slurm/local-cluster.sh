#!/usr/bin/env bash
# Starts and stops a real Slurm cluster on this machine, for the `slurm` tests: munged and
# slurmctld run in the host as plain daemons (no systemd), and each node's slurmd runs as that
# node. One node (the default) is this machine itself; with --nodes N (N >= 2) every node is a
# host of its own inside this machine: a network namespace with its own address on a private
# bridge and a UTS namespace with its own hostname (node1 .. nodeN), so that what it starts (job
# steps, MPI ranks) sees one host per node, as on a real cluster. All state is under one
# directory; nothing leaves the machine.
#
# Usage (as root; CI runs `up --nodes 2` before ctest):
#   up [--nodes N]  installs slurm-wlm and munge when missing (apt-get), makes sure munged runs,
#           makes the nodes' namespaces and links (N >= 2), writes slurm.conf, starts slurmctld
#           and every slurmd and waits (60 s at most per node) for every node to be idle.
#           Idempotent: when the daemons already run with the same config it only checks (and
#           brings back a node that was lost).
#   down    cancels all jobs, stops every slurmd and slurmctld, kills what still runs on the
#           namespaced nodes, removes their namespaces, links and bridge, stops munged only if
#           `up` started it, removes the state directory and the slurm.conf this script wrote.
#   status  prints the nodes (sinfo -N); exit 0 when the controller answers, 1 otherwise.
#   lose NODE     a node failure: cuts the node's link (no packet leaves or arrives, as when a
#           node loses power: peers see silence, not a closed connection), then kills every
#           process on it at once with SIGKILL (its slurmd, slurmstepd and job tasks).
#   restore NODE  the node returns: its link comes back and its slurmd starts again; waits until
#           the slurmd accepts connections and Slurm shows the node idle (ReturnToService=2; a
#           node Slurm had not yet set DOWN shows idle throughout).
#   exec NODE CMD...  runs CMD on the node (in its namespaces), e.g. `exec node2 hostname`.
# Environment: DPT_SLURM_DIR (/tmp/dpt-slurm): state, spool, logs, pid files and the nodes' UTS
#   namespace files. SLURM_CONF (/etc/slurm/slurm.conf): where the config goes; Slurm's tools
#   read it from there. The file is written only when absent or when it carries this script's
#   marker line, so a site's own config is never overwritten (exit 2 instead).
#   DPT_SLURM_SUBNET (10.213.0): the /24 of the nodes (N >= 2); the host end of the bridge is
#   .1 and node K is .(10+K). `up` refuses a subnet that some route of the machine already uses.
#   DPT_SLURM_NAME (dpt), DPT_SLURM_PORT (6817): the prefix of every name below and the
#   controller's port. A second cluster of namespaced nodes can run beside the first with its
#   own DIR, SLURM_CONF, SUBNET, NAME and PORT (its nodes' slurmd ports are in their own
#   namespaces); munged is shared.
# What it makes (N >= 2), named with the prefix NAME-: the bridge NAME-br0 (host address
#   SUBNET.1, where slurmctld listens for the nodes), per node K a network namespace NAME-nodeK
#   and a veth pair whose host end NAME-nodeK is on the bridge and whose node end is eth0 (the
#   node's only interface besides lo), and a UTS namespace kept in $DPT_SLURM_DIR/ns/nodeK.
#   Each node's slurmd also has a mount namespace of its own, where TmpFS ($DIR/node-tmp) is
#   the node's directory $DIR/tmp/nodeK (node-local scratch). `down` removes exactly these.
# Exit codes: 0 fine, 1 a daemon or job failed at run time, 2 a configuration problem.
#
# Facts that matter to tests (measured on Debian 12's Slurm 22.05.8 and Open MPI 4.1.4):
# - One node: named `hostname -s`, at 127.0.0.1. N nodes: node1..nodeN at SUBNET.11.. Each
#   node has the machine's CPUs (the nodes share them); one partition `debug` (default, no time
#   limit). SelectTypeParameters=CR_CPU: memory is not a consumable, so jobs without --mem do
#   not take a whole node; CPUs are, and OverSubscribe=YES shares them only with jobs that ask
#   for --oversubscribe.
# - Namespaced nodes share the host's file systems (/tmp included, as a cluster's shared file
#   system), its users and its process table (pgrep in the host sees every node's processes).
#   Between nodes Open MPI uses TCP over eth0 (ranks on different hostnames are never local to
#   each other), within a node shared memory.
# - A lost node is noticed by slurmctld within SlurmdTimeout (30 s) plus its ping interval.
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
readonly tag="${DPT_SLURM_NAME:-dpt}"
readonly cluster="$tag-local"
readonly ctld_port="${DPT_SLURM_PORT:-6817}"
readonly partition="debug"
readonly wait_s=60
readonly subnet="${DPT_SLURM_SUBNET:-10.213.0}"
readonly bridge="$tag-br0"
readonly ns_prefix="$tag-node"

say() { echo "local-cluster: $*" >&2; }
# die CODE MESSAGE: one clear line, then exit with CODE (2 configuration, 1 run time).
die() {
  local code=$1
  shift
  echo "local-cluster: error: $*" >&2
  exit "$code"
}

# The cluster's node count: from `up --nodes N`, else what the running cluster was made with.
nodes=0
recorded_nodes() {
  local n
  n=$(cat "$dir/nodes" 2>/dev/null || true)
  [[ $n =~ ^[1-9][0-9]*$ ]] && echo "$n" || echo 1
}
# node_name K, node_addr K: the name and address of node K (1-based).
node_name() { if ((nodes == 1)); then hostname -s; else echo "node$1"; fi; }
node_addr() { if ((nodes == 1)); then echo 127.0.0.1; else echo "$subnet.$((10 + $1))"; fi; }
# node_index NAME: K for nodeK of this cluster, or die 2.
node_index() {
  local k
  for ((k = 1; k <= nodes; k++)); do [[ $(node_name "$k") == "$1" ]] && { echo "$k"; return 0; }; done
  die 2 "no node '$1' in this cluster (nodes: $(all_node_names)); see 'status'"
}
all_node_names() {
  local k out=()
  for ((k = 1; k <= nodes; k++)); do out+=("$(node_name "$k")"); done
  echo "${out[*]}"
}
# on_node K CMD...: runs CMD as node K: in its network and UTS namespaces (N >= 2), else here.
on_node() {
  local k=$1
  shift
  if ((nodes == 1)); then
    "$@"
  else
    nsenter --net="/run/netns/$ns_prefix$k" --uts="$dir/ns/node$k" -- "$@"
  fi
}

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

# --- The namespaced nodes' network (N >= 2).

# Dies (2) when some route of the machine, other than our bridge's, is in the subnet.
check_subnet() {
  local re='^(10\.[0-9]{1,3}\.[0-9]{1,3}|172\.(1[6-9]|2[0-9]|3[01])\.[0-9]{1,3}|192\.168\.[0-9]{1,3})$'
  if ! [[ $subnet =~ $re ]]; then
    die 2 "DPT_SLURM_SUBNET=$subnet is not the first three numbers of a private /24 (10.x.y," \
      "172.16-31.y or 192.168.y)"
  fi
  local o used
  for o in ${subnet//./ }; do ((10#$o <= 255)) || die 2 "DPT_SLURM_SUBNET=$subnet: $o is above 255"; done
  # Routes inside the /24 (root) and routes that cover it (match), but the default route and
  # our own bridge's.
  used=$({ ip -4 route show root "$subnet.0/24"; ip -4 route show match "$subnet.0/24"; } 2>/dev/null |
    grep -v '^default' | grep -vw "dev $bridge" | sort -u | tr '\n' ';' || true)
  [[ -z $used ]] || die 2 "subnet $subnet.0/24 is in use on this machine ($used);" \
    "set DPT_SLURM_SUBNET to a free private /24, e.g. DPT_SLURM_SUBNET=10.214.0"
}

# Makes whatever of the bridge and node K's namespaces and link is missing.
make_node_network() {
  local k=$1 ns="$ns_prefix$1" uts="$dir/ns/node$1"
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge || die 1 "cannot create bridge $bridge (ip link add)"
  fi
  # Set each time: an `up` that failed after making a link but before its address is repaired.
  ip addr replace "$subnet.1/24" dev "$bridge"
  ip link set "$bridge" up
  if [[ ! -e /run/netns/$ns ]]; then
    ip netns add "$ns" || die 1 "cannot create network namespace $ns (ip netns add)"
  fi
  if ! ip link show "$ns" >/dev/null 2>&1; then
    ip -n "$ns" link del eth0 2>/dev/null || true
    ip link add "$ns" type veth peer name eth0 netns "$ns" ||
      die 1 "cannot create the veth pair $ns/eth0 of node$k"
  fi
  ip -n "$ns" addr replace "$(node_addr "$k")/24" dev eth0
  ip link set "$ns" master "$bridge" up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  # The UTS namespace is kept by a bind mount on a file (unshare --uts=FILE).
  mkdir -p "$dir/ns"
  if ! mountpoint -q "$uts" 2>/dev/null; then
    touch "$uts"
    unshare --uts="$uts" hostname "node$k" || die 1 "cannot create the UTS namespace of node$k"
  fi
}

# kill_node_processes K: SIGKILL to every process in node K's network namespace, until none.
kill_node_processes() {
  local ns="$ns_prefix$1" pids i
  [[ -e /run/netns/$ns ]] || return 0
  for ((i = 0; i < 50; i++)); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n $pids ]] || return 0
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  say "error: processes of node$1 survive SIGKILL: $(ip netns pids "$ns" | tr '\n' ' ')"
  return 1
}

# Removes every namespace and link this script makes, and the bridge; only names it uses.
remove_network() {
  local ns k rc=0
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${ns_prefix}[0-9]+\$" || true); do
    k=${ns#"$ns_prefix"}
    kill_node_processes "$k" || rc=1
    ip link del "$ns" 2>/dev/null || true
    ip netns del "$ns" || { say "error: cannot remove network namespace $ns"; rc=1; }
  done
  # Host ends whose namespace is already gone.
  for ns in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
    grep -E "^${ns_prefix}[0-9]+\$" || true); do
    ip link del "$ns" 2>/dev/null || true
  done
  if ip link show "$bridge" >/dev/null 2>&1; then ip link del "$bridge"; fi
  if [[ -d $dir/ns ]]; then
    for f in "$dir"/ns/*; do
      [[ -e $f ]] || continue
      if mountpoint -q "$f"; then umount "$f" || { say "error: cannot unmount $f"; rc=1; }; fi
      rm -f "$f" || rc=1
    done
  fi
  return "$rc"
}

install_missing() {
  local missing=()
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null ||
    missing+=(slurm-wlm)
  command -v munged >/dev/null || missing+=(munge)
  # Namespaced nodes: ip (netns, veth, bridge); nsenter, unshare and mountpoint are util-linux.
  if ((nodes > 1)); then command -v ip >/dev/null || missing+=(iproute2); fi
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

# The config for this machine's nodes, on stdout. Topology from `slurmd -C` (what slurmd will check
# against), falling back to nproc; RealMemory 95% of the machine's so slurmd never drains it.
render_conf() {
  local k line cpus mem topo="" ctld_host ctld_addr node_lines="" node_list
  line=$(slurmd -C 2>/dev/null | head -n 1 || true)
  cpus=$(sed -n 's/.*\bCPUs=\([0-9]*\).*/\1/p' <<<"$line")
  mem=$(sed -n 's/.*\bRealMemory=\([0-9]*\).*/\1/p' <<<"$line")
  [[ -n $cpus ]] || cpus=$(nproc)
  [[ -n $mem ]] || mem=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
  local re='(Boards=[0-9]+ SocketsPerBoard=[0-9]+ CoresPerSocket=[0-9]+ ThreadsPerCore=[0-9]+)'
  if [[ $line =~ $re ]]; then topo=" ${BASH_REMATCH[1]}"; fi
  ctld_host=$(hostname -s)
  if ((nodes == 1)); then ctld_addr=127.0.0.1; else ctld_addr="$subnet.1"; fi
  for ((k = 1; k <= nodes; k++)); do
    node_lines+="NodeName=$(node_name "$k") NodeAddr=$(node_addr "$k") CPUs=$cpus$topo"
    node_lines+=" RealMemory=$((mem * 95 / 100)) State=UNKNOWN"$'\n'
  done
  if ((nodes == 1)); then node_list=$(node_name 1); else node_list="node[1-$nodes]"; fi
  cat <<EOF
$marker
# A test cluster of $nodes node(s) on this machine; state, logs and pid files under $dir.
ClusterName=$cluster
SlurmctldPort=$ctld_port
SlurmctldHost=$ctld_host($ctld_addr)
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
SlurmdTimeout=30
JobRequeue=1
MinJobAge=300
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
TmpFS=$dir/node-tmp
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
${node_lines}PartitionName=$partition Nodes=$node_list Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
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

node_state() { { timeout 5 sinfo -h -n "$1" -o %T 2>/dev/null || true; } | head -n 1 || true; }

# start_slurmd K: starts node K's slurmd (as that node) unless it runs.
start_slurmd() {
  local k=$1 name
  name=$(node_name "$k")
  pid_alive "$dir/slurmd-$name.pid" slurmd && return 0
  mkdir -p "$dir/spool/$name"
  say "starting slurmd of $name (log $dir/slurmd-$name.log)"
  mkdir -p "$dir/node-tmp"
  if ((nodes == 1)); then
    slurmd -f "$conf" </dev/null >>"$dir/slurmd-$name.out" 2>&1
  else
    # TmpFS is node-local, as on a cluster: a mount namespace of the slurmd (and so of its
    # steps) shows the node's own directory there. Slurm's PMIx plugin makes its per-step
    # directories in TmpFS by names without the node's, so shared ones would collide.
    mkdir -p "$dir/tmp/$name"
    on_node "$k" unshare --mount --propagation slave -- sh -c \
      'mount --bind "$1" "$2" && exec slurmd -f "$3" -N "$4"' sh \
      "$dir/tmp/$name" "$dir/node-tmp" "$conf" "$name" </dev/null >>"$dir/slurmd-$name.out" 2>&1
  fi || die 1 "slurmd of $name failed to start; read $dir/slurmd-$name.out and $dir/slurmd-$name.log"
  # Until slurmctld notices a lost node it still shows it idle: a node is ready only once its
  # new slurmd accepts connections (SlurmdPort 6818, on the node's own address).
  local i
  for ((i = 0; i < 300; i++)); do
    timeout 1 bash -c "exec 3<>/dev/tcp/$(node_addr "$k")/6818" 2>/dev/null && return 0
    sleep 0.1
  done
  die 1 "slurmd of $name does not accept connections after 30 s; read $dir/slurmd-$name.log"
}

# Stops every slurmd this script started (any node count, and the one-node layout's old name).
stop_all_slurmd() {
  local f
  for f in "$dir"/slurmd-*.pid "$dir/slurmd.pid"; do
    [[ -e $f ]] && stop_pidfile "$f" slurmd
  done
  return 0
}

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
  local k
  for ((k = 1; k <= nodes; k++)); do start_slurmd "$k"; done
}

# wait_node_idle K: waits for node K to take jobs; resumes it once if it comes up down or
# drained.
wait_node_idle() {
  local node state="" resumed=0 t0=$SECONDS
  node=$(node_name "$1")
  while ((SECONDS - t0 < wait_s)); do
    state=$(node_state "$node")
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
    pid_alive "$dir/slurmd-$node.pid" slurmd || ((SECONDS - t0 < 3)) ||
      die 1 "slurmd of $node exited; read $dir/slurmd-$node.log (and $dir/slurmd-$node.out)"
    sleep 0.5
  done
  die 1 "node $node not idle after ${wait_s}s (state '${state:-unknown}');" \
    "read $dir/slurmd-$node.log and $dir/slurmctld.log"
}

wait_nodes_idle() {
  local k
  for ((k = 1; k <= nodes; k++)); do wait_node_idle "$k"; done
}

# One task on every node.
pmix_step_runs() {
  timeout 60 srun --mpi=pmix -N"$nodes" -n"$nodes" -t 1 true </dev/null >/dev/null 2>&1
}

cmd_up() {
  local new
  [[ $(id -u) -eq 0 ]] || die 2 "run as root (SlurmUser=root, munged is started as munge)"
  ((nodes > 0)) || nodes=1
  install_missing
  ((nodes == 1)) || check_subnet
  start_munge
  new=$(render_conf)
  if write_conf "$new"; then
    # A changed config (say, another CPU or node count) needs fresh daemons and nodes.
    stop_all_slurmd
    stop_pidfile "$dir/slurmctld.pid" slurmctld
    remove_network || die 1 "could not remove the old nodes' network (see above)"
  fi
  mkdir -p "$dir"
  echo "$nodes" >"$dir/nodes"
  local k
  if ((nodes > 1)); then
    for ((k = 1; k <= nodes; k++)); do make_node_network "$k"; done
  fi
  export SLURM_CONF="$conf"
  start_daemons
  wait_nodes_idle
  # A slurmd started before libpmix was installed lists pmix but cannot launch a pmix step;
  # one real step proves it, and a fresh slurmd picks the library up.
  if ! pmix_step_runs; then
    say "srun --mpi=pmix cannot launch a step; restarting slurmd"
    stop_all_slurmd
    start_daemons
    wait_nodes_idle
    pmix_step_runs || die 1 "srun --mpi=pmix cannot launch a step; read $dir/slurmd-*.log" \
      "(package libpmix2 and slurm-wlm-basic-plugins provide the plugin)"
  fi
  if ((nodes == 1)); then
    say "up: partition $partition on $(node_name 1); SLURM_CONF=$conf, logs in $dir"
  else
    say "up: partition $partition on $(all_node_names) ($subnet.11-$((10 + nodes)) on bridge" \
      "$bridge); SLURM_CONF=$conf, logs in $dir"
  fi
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
  stop_all_slurmd
  stop_pidfile "$dir/slurmctld.pid" slurmctld
  local rc=0
  remove_network || rc=1
  if [[ -e $dir/munged.ours ]]; then
    say "stopping munged (started by up)"
    runuser -u munge -- /usr/sbin/munged --stop >/dev/null 2>&1 || true
  fi
  if [[ -e $conf ]] && grep -qxF "$marker" "$conf"; then rm -f "$conf"; fi
  rm -rf "$dir"
  ((rc == 0)) || die 1 "down: some of the nodes' processes or namespaces remain (see above)"
  say "down"
}

cmd_status() {
  export SLURM_CONF="$conf"
  if [[ -e $conf ]] && ctld_answers; then
    sinfo -N -o "%N %T %c %O"
    return 0
  fi
  say "cluster not answering (config $conf; logs in $dir)"
  return 1
}

# lose NODE: the node fails; see the usage at the top.
cmd_lose() {
  local k name=$1
  k=$(node_index "$name")
  ((nodes > 1)) || die 2 "lose needs a cluster of namespaced nodes (up --nodes 2 or more)"
  ip link set "$ns_prefix$k" down || die 1 "cannot take down the link of $name"
  kill_node_processes "$k"
  say "$name lost: its link is down and its processes were killed (restore $name brings it back)"
}

# restore NODE: the node returns.
cmd_restore() {
  local k name=$1
  k=$(node_index "$name")
  export SLURM_CONF="$conf"
  ((nodes == 1)) || make_node_network "$k"
  start_slurmd "$k"
  wait_node_idle "$k"
  say "$name restored"
}

usage() {
  echo "usage: $0 up [--nodes N] | down | status | lose NODE | restore NODE | exec NODE CMD..." >&2
  exit 2
}

if ! [[ $tag =~ ^[a-z][a-z0-9]{0,5}$ ]]; then
  die 2 "DPT_SLURM_NAME=$tag: give 1 to 6 lowercase letters or digits, starting with a letter"
fi
if ! [[ $ctld_port =~ ^[0-9]{1,5}$ ]] || ((ctld_port < 1 || ctld_port > 65535)); then
  die 2 "DPT_SLURM_PORT=$ctld_port is not a TCP port"
fi
cmd=${1:-}
(($# > 0)) && shift
case "$cmd" in
  up)
    nodes=1
    while (($# > 0)); do
      case $1 in
        --nodes) nodes=${2:-}; shift 2 || usage ;;
        --nodes=*) nodes=${1#--nodes=}; shift ;;
        *) usage ;;
      esac
    done
    if ! [[ $nodes =~ ^[1-9][0-9]?$ ]] || ((nodes > 64)); then die 2 "--nodes $nodes: give 1 to 64"; fi
    cmd_up
    ;;
  down) nodes=$(recorded_nodes); cmd_down ;;
  status) nodes=$(recorded_nodes); cmd_status ;;
  lose | restore)
    (($# == 1)) || usage
    nodes=$(recorded_nodes)
    "cmd_$cmd" "$1"
    ;;
  exec)
    (($# >= 2)) || usage
    nodes=$(recorded_nodes)
    k=$(node_index "$1")
    shift
    on_node "$k" "$@"
    ;;
  *) usage ;;
esac
