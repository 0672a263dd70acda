// What Slurm tells a process about its job, from the environment, and the check that MPI's
// placement of ranks on nodes agrees with Slurm's.
#pragma once

#include <string>

#include "comm/communicator.h"
#include "comm/mpi_session.h"

namespace dpt::job {

struct SlurmEnv {
  std::string job_id;        // SLURM_JOB_ID ("" outside a Slurm job)
  std::string array_job_id;  // SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID ("" when not an array)
  std::string array_task_id;
  std::string nodelist;   // SLURM_JOB_NODELIST
  int restart_count = 0;  // SLURM_RESTART_COUNT: times the job was requeued
  int procid = -1;        // SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS (-1: absent)
  int localid = -1;
  int ntasks = -1;
  bool in_step = false;  // SLURM_STEP_ID set: started by srun, not inherited from the batch shell

  static SlurmEnv from_environment();
  bool in_job() const { return !job_id.empty(); }
  // The id scontrol requeue takes: "<array job>_<task>" for an array task, else the job id.
  std::string requeue_id() const;
};

// Collective; decides on values agreed by all ranks, so every rank takes the same path and
// throws the same UsageError. Where srun started the ranks (every rank in an srun step with
// SLURM_PROCID equal to its world rank), checks that SLURM_LOCALID is the local rank MPI found
// and SLURM_NTASKS the world size. Tasks of an srun step that MPI did not join into one job
// (each a world of its own) are refused too. Returns how the local rank was established (for
// the log), e.g. "MPI shared-memory split, matches SLURM_LOCALID".
std::string check_slurm_placement(comm::Communicator& comm, const comm::Placement& place,
                                  const SlurmEnv& env);

}  // namespace dpt::job
