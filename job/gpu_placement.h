// --device: which processor each rank trains on, and which GPU of its node is its own.
#pragma once

#include <optional>
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

// [GPU mapping] for one rank, as a pure function of what that rank sees: its local rank among
// the `local_size` ranks of its node (MPI's split, checked against SLURM_LOCALID under srun),
// how many CUDA devices it sees (`visible`) and CUDA_VISIBLE_DEVICES (nullopt: unset; Slurm sets
// it from --gres or --gpus-per-task). The nodes of one job may differ in all of these. `gpu` is
// the device ordinal it takes, or -1 with `problem` saying why and what to change.
struct LocalGpuPick {
  int gpu = -1;
  std::string problem;  // empty when gpu >= 0, or when the rank sees no GPU at all
};
LocalGpuPick pick_local_gpu(int local_rank, int local_size, int visible,
                            const std::optional<std::string>& cuda_visible_devices);

// Collective; call inside run_agreed. [GPU mapping]: one GPU per local rank. When a rank sees
// at least as many GPUs as its node has ranks (--gres=gpu:N), local rank i takes device i;
// when it sees exactly one (srun --gpus-per-task=1, or CUDA_VISIBLE_DEVICES set per rank), it
// takes that one. Ranks of one node that would share a physical GPU (same UUID) are an error
// for --device cuda. `wanted` is --device; throws UsageError saying what
// to change when it cannot be had.
DeviceChoice choose_device(Device wanted, comm::Communicator& comm, const comm::Placement& place);

}  // namespace dpt::job
