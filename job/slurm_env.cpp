// Slurm's environment variables, and MPI's placement checked against them.
#include "job/slurm_env.h"

#include <cstdlib>
#include <tuple>

#include "comm/typed_collectives.h"
#include "common/errors.h"

namespace dpt::job {

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

std::string check_slurm_placement(comm::Communicator& comm, const comm::Placement& place,
                                  const SlurmEnv& env) {
  // Per-rank variables only when srun started every rank; under mpirun inside a job every
  // rank inherits the batch shell's SLURM_PROCID=0 and SLURM_LOCALID=0, and no SLURM_STEP_ID.
  // Decided on agreed minima and maxima, so that every rank takes the same path.
  const int W = comm.world_size();
  const int32_t srun_task = env.in_job() && env.in_step ? 1 : 0;
  struct AllRanks {  // 1 where every rank says so (minimum over ranks)
    int32_t in_job, procid_is_rank, ntasks_match;
    auto fields() { return std::tie(in_job, procid_is_rank, ntasks_match); }
  } all{env.in_job() ? 1 : 0, srun_task && env.procid == place.rank ? 1 : 0,
        env.ntasks == W || env.ntasks < 0 ? 1 : 0};
  struct AnyRank {  // maxima over ranks
    int32_t srun_task, ntasks;
    auto fields() { return std::tie(srun_task, ntasks); }
  } any{srun_task, env.ntasks};
  comm::all_reduce_fields(comm, all, comm::ReduceOp::min);
  comm::all_reduce_fields(comm, any, comm::ReduceOp::max);
  const std::string rewire =
      ": srun did not wire the tasks into one MPI job. Use 'srun --mpi=pmix' (srun --mpi=list "
      "shows what this Slurm supports)";
  if (!all.in_job) return "MPI shared-memory split (not in a Slurm job)";
  if (!all.procid_is_rank) {
    if (any.srun_task == 1 && W == 1 && any.ntasks > 1)
      throw UsageError("srun started " + std::to_string(any.ntasks) +
                       " tasks but MPI sees this one as a world of 1 rank" + rewire);
    return "MPI shared-memory split (SLURM_PROCID is not per rank: launched by mpirun inside "
           "the job, not by srun)";
  }
  if (!all.ntasks_match)
    throw UsageError("SLURM_NTASKS=" + std::to_string(any.ntasks) + " but MPI has " +
                     std::to_string(W) + " ranks" + rewire);
  // Every rank's local rank by MPI and by Slurm; the first that differ is reported by all.
  struct LocalRank {
    int32_t by_mpi, by_slurm;
  };
  const auto local = comm::all_gather_value(comm, LocalRank{place.local_rank, env.localid});
  for (int r = 0; r < W; ++r) {
    const LocalRank& l = local[static_cast<size_t>(r)];
    if (l.by_mpi != l.by_slurm)
      throw UsageError("rank " + std::to_string(r) + " is local rank " + std::to_string(l.by_mpi) +
                       " of its node by MPI's shared-memory split but SLURM_LOCALID=" +
                       std::to_string(l.by_slurm) +
                       ": MPI and Slurm disagree on which ranks share a node, so GPUs would be "
                       "assigned wrongly. Launch with 'srun --mpi=pmix' and leave the task "
                       "layout to Slurm");
  }
  return "MPI shared-memory split, matches SLURM_LOCALID";
}

}  // namespace dpt::job
