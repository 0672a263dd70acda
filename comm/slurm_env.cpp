// Slurm's environment variables, and MPI's placement checked against them.
#include "comm/slurm_env.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "common/errors.h"

namespace dpt::comm {

namespace {

std::string env_text(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}
int env_int(const char* name, int absent) {
  const std::string v = env_text(name);
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) return absent;
  return std::atoi(v.c_str());
}

}  // namespace

SlurmEnv SlurmEnv::from_environment() {
  SlurmEnv e;
  e.job_id = env_text("SLURM_JOB_ID");
  e.array_job_id = env_text("SLURM_ARRAY_JOB_ID");
  e.array_task_id = env_text("SLURM_ARRAY_TASK_ID");
  e.nodelist = env_text("SLURM_JOB_NODELIST");
  e.restart_count = env_int("SLURM_RESTART_COUNT", 0);
  e.procid = env_int("SLURM_PROCID", -1);
  e.localid = env_int("SLURM_LOCALID", -1);
  e.ntasks = env_int("SLURM_NTASKS", -1);
  e.in_step = !env_text("SLURM_STEP_ID").empty() || !env_text("SLURM_STEPID").empty();
  return e;
}

std::string SlurmEnv::requeue_id() const {
  if (!array_job_id.empty() && !array_task_id.empty()) return array_job_id + "_" + array_task_id;
  return job_id;
}

std::string check_slurm_placement(Communicator& comm, const Placement& place, const SlurmEnv& env) {
  // Per-rank variables only when srun started every rank; under mpirun inside a job every
  // rank inherits the batch shell's SLURM_PROCID=0 and SLURM_LOCALID=0, and no SLURM_STEP_ID.
  // Decided on agreed minima and maxima, so that every rank takes the same path.
  const int W = comm.world_size();
  const int32_t srun_task = env.in_job() && env.in_step ? 1 : 0;
  int32_t lo[3] = {env.in_job() ? 1 : 0, srun_task && env.procid == place.rank ? 1 : 0,
                   env.ntasks == W || env.ntasks < 0 ? 1 : 0};
  int32_t hi[2] = {srun_task, env.ntasks};
  comm.all_reduce(std::span<int32_t>(lo, 3), ReduceOp::min);
  comm.all_reduce(std::span<int32_t>(hi, 2), ReduceOp::max);
  const std::string rewire =
      ": srun did not wire the tasks into one MPI job. Use 'srun --mpi=pmix' (srun --mpi=list "
      "shows what this Slurm supports)";
  if (lo[0] == 0) return "MPI shared-memory split (not in a Slurm job)";
  if (lo[1] == 0) {
    if (hi[0] == 1 && W == 1 && hi[1] > 1)
      throw UsageError("srun started " + std::to_string(hi[1]) +
                       " tasks but MPI sees this one as a world of 1 rank" + rewire);
    return "MPI shared-memory split (SLURM_PROCID is not per rank: launched by mpirun inside "
           "the job, not by srun)";
  }
  if (lo[2] == 0)
    throw UsageError("SLURM_NTASKS=" + std::to_string(hi[1]) + " but MPI has " + std::to_string(W) +
                     " ranks" + rewire);
  // Every rank's (local rank, SLURM_LOCALID); the first that differ is reported by all.
  int32_t mine[2] = {place.local_rank, env.localid};
  std::vector<int32_t> all(2 * static_cast<size_t>(comm.world_size()));
  comm.all_gather(std::span<const int32_t>(mine, 2), std::span<int32_t>(all));
  for (int r = 0; r < comm.world_size(); ++r) {
    if (all[2 * r] != all[2 * r + 1])
      throw UsageError("rank " + std::to_string(r) + " is local rank " +
                       std::to_string(all[2 * r]) +
                       " of its node by MPI's shared-memory split but SLURM_LOCALID=" +
                       std::to_string(all[2 * r + 1]) +
                       ": MPI and Slurm disagree on which ranks share a node, so GPUs would be "
                       "assigned wrongly. Launch with 'srun --mpi=pmix' and leave the task "
                       "layout to Slurm");
  }
  return "MPI shared-memory split, matches SLURM_LOCALID";
}

std::string describe_nodes(Communicator& comm, const Placement& place) {
  constexpr size_t kName = 64;
  std::vector<uint8_t> mine(kName, 0);
  std::memcpy(mine.data(), place.host.data(), std::min(place.host.size(), kName - 1));
  std::vector<uint8_t> all(kName * static_cast<size_t>(comm.world_size()));
  comm.all_gather(std::span<const uint8_t>(mine), std::span<uint8_t>(all));
  if (comm.rank() != 0) return "";
  // Hosts in order of their first rank, each with its ranks as ranges.
  std::vector<std::string> order;
  std::map<std::string, std::vector<int>> ranks;
  for (int r = 0; r < comm.world_size(); ++r) {
    const std::string h(reinterpret_cast<const char*>(&all[kName * r]));
    if (!ranks.count(h)) order.push_back(h);
    ranks[h].push_back(r);
  }
  std::string s = std::to_string(order.size()) + " node(s):";
  for (const auto& h : order) {
    s += " " + h + " ranks ";
    const auto& v = ranks[h];
    for (size_t i = 0; i < v.size();) {
      size_t j = i;
      while (j + 1 < v.size() && v[j + 1] == v[j] + 1)
        ++j;
      s += (i ? "," : "") + std::to_string(v[i]) + (j > i ? "-" + std::to_string(v[j]) : "");
      i = j + 1;
    }
    s += ";";
  }
  s.pop_back();
  return s;
}

}  // namespace dpt::comm
