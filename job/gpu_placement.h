// --device: which processor each rank trains on, and which GPU of its node is its own.
#pragma once

#include <string>

#include "comm/communicator.h"
#include "comm/mpi_session.h"
#include "job/device.h"

namespace dpt::job {

struct DeviceChoice {
  Device device = Device::cpu;  // what this rank trains on: cpu or cuda
  int gpu = -1;                 // this rank's CUDA device ordinal (-1: trains on the CPU)
  std::string summary;          // rank 0: the choice and the GPU mapping of all ranks, for the log
};

// Collective; call inside run_agreed. [GPU mapping]: one GPU per local rank. When a rank sees
// at least as many GPUs as its node has ranks (--gres=gpu:N), local rank i takes device i;
// when it sees exactly one (srun --gpus-per-task=1, or CUDA_VISIBLE_DEVICES set per rank), it
// takes that one. Ranks of one node that would share a physical GPU (same UUID) are an error
// for --device cuda. `wanted` is --device; throws UsageError saying what
// to change when it cannot be had.
DeviceChoice choose_device(Device wanted, comm::Communicator& comm, const comm::Placement& place);

}  // namespace dpt::job
