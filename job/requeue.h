// Requeueing the Slurm job after a stop that allows it ([Stop requests]).
#pragma once

#include <string>

#include "job/slurm_env.h"

namespace dpt::job {

struct RequeueResult {
  bool ok = false;
  std::string error;  // scontrol's own words when it failed
};

// Runs `scontrol requeue <id>` for this job (or array task), waiting at most timeout_s. Rank 0
// calls it once every rank has finished its part of the checkpoint.
RequeueResult requeue_job(const SlurmEnv& env, int timeout_s = 60);

}  // namespace dpt::job
