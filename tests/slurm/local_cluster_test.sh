#!/usr/bin/env bash
# scripts/slurm/local-cluster.sh leaves the machine as it found it: a second cluster of two
# namespaced nodes (its own state directory, config, subnet, name prefix and controller port)
# comes up beside whatever runs, serves a two-node step, loses and restores a node, and `down`
# then leaves no namespace, link, mount, route or daemon of its own behind, and the cluster
# that ran before still answers. Needs root (namespaces, links); exit 77 (skipped) otherwise.
set -euo pipefail
src="${DPT_SOURCE:?set by ctest}"
cluster="$src/scripts/slurm/local-cluster.sh"
if [[ $(id -u) -ne 0 ]] || ! command -v slurmctld > /dev/null || ! command -v nsenter > /dev/null; then
  echo "SKIP: needs root, Slurm's daemons and nsenter (scripts/slurm/local-cluster.sh up installs Slurm)"
  exit 77
fi
dir="$(mktemp -d "${TMPDIR:-/tmp}/dpt-lc-XXXXXX")"
export DPT_SLURM_DIR="$dir" SLURM_CONF="$dir/slurm.conf" DPT_SLURM_SUBNET=10.213.7
export DPT_SLURM_NAME=dptlc DPT_SLURM_PORT=6917
trap 'bash "$cluster" down > /dev/null 2>&1 || true; rm -rf "$dir"' EXIT

# What a cluster may leave behind: interfaces, network namespaces, mount points, routes, and
# Slurm's and munge's daemons.
snapshot() {
  echo "links: $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort | tr '\n' ' ')"
  echo "netns: $(ip netns list 2> /dev/null | awk '{print $1}' | sort | tr '\n' ' ')"
  echo "mounts: $(awk '{print $5}' /proc/self/mountinfo | sort | tr '\n' ' ')"
  echo "routes: $(ip -4 route show | sort | tr '\n' ';')"
  echo "daemons: $(pgrep -x 'slurmd|slurmctld|munged' | sort -n | tr '\n' ' ')"
}
main_up=0
SLURM_CONF=/etc/slurm/slurm.conf scontrol ping > /dev/null 2>&1 && main_up=1
before=$(snapshot)

bash "$cluster" up --nodes 2
during=$(snapshot)
for want in "dptlc-br0" "dptlc-node1" "dptlc-node2"; do
  grep -q " $want " <<< " $(grep '^links:' <<< "$during") " || { echo "FAIL: no link $want"; echo "$during"; exit 1; }
done
[[ $(grep '^netns:' <<< "$during") == *"dptlc-node1 dptlc-node2"* ]] || { echo "FAIL: namespaces"; echo "$during"; exit 1; }
seen=$(timeout 60 srun -N2 -n2 hostname | sort | tr '\n' ' ')
[[ $seen == "node1 node2 " ]] || { echo "FAIL: a step on both nodes ran on: $seen"; exit 1; }
[[ $(bash "$cluster" exec node2 hostname) == node2 ]] || { echo "FAIL: exec node2"; exit 1; }

# A lost node: no process is left in its namespace and its link is down; restored, it runs again.
bash "$cluster" lose node2
[[ -z $(ip netns pids dptlc-node2) ]] || { echo "FAIL: processes survive on a lost node"; exit 1; }
ip -o link show dptlc-node2 | grep -q "state DOWN" || { echo "FAIL: the lost node's link is up"; exit 1; }
bash "$cluster" restore node2
seen=$(timeout 60 srun -N2 -n2 hostname | sort | tr '\n' ' ')
[[ $seen == "node1 node2 " ]] || { echo "FAIL: after restore a step ran on: $seen"; exit 1; }

bash "$cluster" down
after=$(snapshot)
if [[ $after != "$before" ]]; then
  echo "FAIL: down did not leave the machine as it found it:"
  diff <(echo "$before" | tr ' ;' '\n\n') <(echo "$after" | tr ' ;' '\n\n') || true
  exit 1
fi
[[ ! -e $dir/slurm.conf && ! -e $dir/nodes ]] || { echo "FAIL: state left in $dir"; ls -la "$dir"; exit 1; }
if ((main_up)); then
  SLURM_CONF=/etc/slurm/slurm.conf scontrol ping > /dev/null 2>&1 ||
    { echo "FAIL: the cluster that ran before no longer answers"; exit 1; }
fi
echo "ok: a second 2-node cluster came up beside the first, lost and restored node2; down left nothing behind"
