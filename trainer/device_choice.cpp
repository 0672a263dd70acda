// [GPU mapping] and the --device decision.
#include "trainer/device_choice.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "common/errors.h"
#include "common/hash.h"
#include "kernels/cuda_device.h"

namespace dpt::trainer {

DeviceChoice choose_device(const std::string& wanted, comm::Communicator& comm,
                           const comm::Placement& place) {
  DeviceChoice c;
  int visible = 0;
  std::string query_error;
  try {
    visible = kernels::cuda_device_count();
  } catch (const std::exception& e) {
    query_error = e.what();
  }
  if (visible >= place.local_size) {
    c.gpu = place.local_rank;
  } else if (visible == 1) {
    c.gpu = 0;
  }
  std::string uuid;
  if (c.gpu >= 0) {
    try {
      uuid = kernels::cuda_device_uuid(c.gpu);
    } catch (const std::exception& e) {
      query_error = e.what();
      c.gpu = -1;
    }
  }
  // Every rank's (host, GPU) as hashes: two ranks with both equal would share one GPU.
  const uint64_t mine[3] = {fnv1a64(place.host.data(), place.host.size()),
                            c.gpu >= 0 ? fnv1a64(uuid.data(), uuid.size()) : 0,
                            static_cast<uint64_t>(visible)};
  const int W = comm.world_size();
  std::vector<uint64_t> all(3 * static_cast<size_t>(W));
  comm.all_gather(std::span<const uint64_t>(mine, 3), std::span<uint64_t>(all));
  int shared_a = -1, shared_b = -1, unmapped = -1;
  uint64_t max_visible = 0;
  for (int a = 0; a < W; ++a)
    max_visible = std::max(max_visible, all[3 * a + 2]);
  for (int a = 0; a < W && shared_a < 0; ++a) {
    if (all[3 * a + 1] == 0 && unmapped < 0) unmapped = a;
    for (int b = a + 1; b < W; ++b)
      if (all[3 * a + 1] != 0 && all[3 * a] == all[3 * b] && all[3 * a + 1] == all[3 * b + 1]) {
        shared_a = a;
        shared_b = b;
        break;
      }
  }
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string cvd_text =
      cvd ? std::string("CUDA_VISIBLE_DEVICES=") + cvd : std::string("CUDA_VISIBLE_DEVICES unset");
  std::string mapping;
  if (!kernels::cuda_built()) {
    mapping = "no GPU mapping (this build has no CUDA)";
  } else if (max_visible == 0) {
    mapping = "no GPU visible to any rank (" + cvd_text + " on rank 0)" +
              (query_error.empty() ? "" : ": " + query_error);
  } else if (unmapped >= 0) {
    mapping = "rank " + std::to_string(unmapped) + " has no GPU of its own (it sees " +
              std::to_string(all[3 * unmapped + 2]) + ", fewer than the ranks on its node)";
  } else if (shared_a >= 0) {
    mapping =
        "ranks " + std::to_string(shared_a) + " and " + std::to_string(shared_b) + " share one GPU";
  } else {
    mapping = "one GPU per rank, no two alike (rank 0: local rank " +
              std::to_string(place.local_rank) + " -> CUDA device " + std::to_string(c.gpu) +
              " of " + std::to_string(visible) + ", " + cvd_text + ", " + uuid + ")";
  }

  const bool all_mapped = kernels::cuda_built() && max_visible > 0 && unmapped < 0 && shared_a < 0;
  if (wanted == "cuda") {
    if (!kernels::cuda_built())
      throw UsageError(
          "--device cuda, but this build has no CUDA (CMake found no nvcc, or "
          "DPT_CUDA=OFF): rebuild with CUDA, or pass --device cpu");
    if (max_visible == 0)
      throw UsageError("--device cuda: " + mapping +
                       ". Run on a node with a GPU (Slurm: --gpus-per-task=1 or --gres=gpu:N), "
                       "or pass --device cpu");
    if (!all_mapped)
      throw UsageError("--device cuda: " + mapping +
                       ". Give each task its own GPU: 'srun --gpus-per-task=1', or '--gres=gpu:N' "
                       "with N tasks per node, or fewer ranks per node");
  }
  // auto takes the GPUs only when every rank has one of its own.
  c.device = (wanted == "cuda" || (wanted == "auto" && all_mapped)) ? "cuda" : "cpu";
  if (c.device == "cpu") c.gpu = -1;
  c.summary = "device: " + c.device + " (--device " + wanted + ")" +
              (wanted == "auto" && c.device == "cpu" && max_visible > 0
                   ? "; not every rank has a GPU of its own, so all train on the CPU"
                   : "") +
              " | GPUs: " + mapping;
  if (comm.rank() != 0) c.summary.clear();
  return c;
}

}  // namespace dpt::trainer
