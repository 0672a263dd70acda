// [GPU mapping] and the --device decision.
#include "job/gpu_placement.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "comm/typed_collectives.h"
#include "common/errors.h"
#include "common/hash.h"
#include "kernels/cuda_device.h"

namespace dpt::job {

const char* device_name(Device d) {
  switch (d) {
    case Device::cpu:
      return "cpu";
    case Device::cuda:
      return "cuda";
    case Device::automatic:
      return "auto";
  }
  return "?";
}

namespace {

// The entries of a CUDA_VISIBLE_DEVICES list ("0,2", "GPU-8c1f...,MIG-..."). An empty entry
// inside the list is kept (the runtime stops reading there); one trailing comma is dropped.
std::vector<std::string> split_device_list(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = list.find(',', start);
    out.push_back(
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (out.size() > 1 && out.back().empty()) out.pop_back();
  return out;
}

}  // namespace

LocalGpuPick pick_local_gpu(int local_rank, int local_size, int visible,
                            const std::optional<std::string>& cuda_visible_devices) {
  LocalGpuPick p;
  const std::string cvd = cuda_visible_devices ? "CUDA_VISIBLE_DEVICES=" + *cuda_visible_devices
                                               : std::string("CUDA_VISIBLE_DEVICES unset");
  if (local_rank < 0 || local_size < 1 || local_rank >= local_size || visible < 0) {
    p.problem = "local rank " + std::to_string(local_rank) + " of " + std::to_string(local_size) +
                " ranks on its node with " + std::to_string(visible) +
                " visible GPU(s) is not a placement (a bug: report it)";
    return p;
  }
  if (visible == 0) return p;  // no GPU: the caller says so for the whole job
  // The runtime stops reading the list at its first entry that is no device of this node, so
  // a rank that sees fewer devices than the list names was given a wrong list.
  if (cuda_visible_devices && !cuda_visible_devices->empty()) {
    const auto entries = split_device_list(*cuda_visible_devices);
    if (static_cast<int>(entries.size()) > visible) {
      p.problem = cvd + " names " + std::to_string(entries.size()) +
                  " devices, but the CUDA runtime sees only " + std::to_string(visible) +
                  ": entry " + std::to_string(visible + 1) + " ('" + entries[visible] +
                  "') is not a device of this node. Fix the list, or leave it to Slurm "
                  "(--gres=gpu:N or --gpus-per-task=1 set it)";
      return p;
    }
  }
  if (visible >= local_size) {
    p.gpu = local_rank;  // --gres=gpu:N with N tasks per node: all visible to every task
  } else if (visible == 1) {
    p.gpu = 0;  // --gpus-per-task=1: each task sees its own (the UUID check finds sharing)
  } else {
    p.problem = "sees " + std::to_string(visible) + " GPUs (" + cvd + "), fewer than the " +
                std::to_string(local_size) + " ranks on its node, so local rank " +
                std::to_string(local_rank) +
                " has none of its own. Give each task its own GPU ('srun --gpus-per-task=1'), "
                "or ask for '--gres=gpu:" +
                std::to_string(local_size) + "', or run at most " + std::to_string(visible) +
                " ranks on that node";
  }
  return p;
}

namespace {

// This rank's candidate GPU ([GPU mapping], pick_local_gpu) and its UUID.
struct LocalGpu {
  int gpu = -1;
  int visible = 0;
  std::string uuid;
  std::string problem;      // why it has none of its own (pick_local_gpu)
  std::string query_error;  // why the CUDA runtime could not say
};

LocalGpu find_local_gpu(const comm::Placement& place) {
  LocalGpu g;
  try {
    g.visible = kernels::cuda_device_count();
  } catch (const std::exception& e) {
    g.query_error = e.what();
  }
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
  const LocalGpuPick pick = pick_local_gpu(place.local_rank, place.local_size, g.visible,
                                           cvd ? std::optional<std::string>(cvd) : std::nullopt);
  g.gpu = pick.gpu;
  g.problem = pick.problem;
  if (g.gpu >= 0) {
    try {
      g.uuid = kernels::cuda_device_uuid(g.gpu);
    } catch (const std::exception& e) {
      g.query_error = e.what();
      g.problem = "cannot read the UUID of CUDA device " + std::to_string(g.gpu) + ": " + e.what();
      g.gpu = -1;
    }
  }
  return g;
}

// The mapping of all ranks, agreed: whether every rank has a GPU of its own, and in words.
struct Mapping {
  bool all_mapped = false;
  int64_t max_visible = 0;
  std::string text;
};

Mapping agree_mapping(comm::Communicator& comm, const comm::Placement& place, const LocalGpu& g) {
  // Every rank's (host, GPU) as hashes: two ranks with both equal would share one GPU.
  struct Seen {
    uint64_t host, gpu;  // FNV-1a of the host name and of the GPU's UUID (0: no GPU)
    int64_t visible;     // GPUs this rank sees
  };
  const auto all = comm::all_gather_value(
      comm, Seen{fnv1a64(place.host.data(), place.host.size()),
                 g.gpu >= 0 ? fnv1a64(g.uuid.data(), g.uuid.size()) : 0, g.visible});
  // Start-up only: each rank's host and why it has no GPU of its own, for the message.
  const auto problems = comm::all_gather_strings(comm, g.problem);
  const auto hosts = comm::all_gather_strings(comm, place.host);
  const int W = comm.world_size();
  int shared_a = -1, shared_b = -1, unmapped = -1;
  Mapping m;
  for (const Seen& s : all)
    m.max_visible = std::max(m.max_visible, s.visible);
  for (int a = 0; a < W && shared_a < 0; ++a) {
    if (all[a].gpu == 0 && unmapped < 0) unmapped = a;
    for (int b = a + 1; b < W; ++b)
      if (all[a].gpu != 0 && all[a].host == all[b].host && all[a].gpu == all[b].gpu) {
        shared_a = a;
        shared_b = b;
        break;
      }
  }
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string cvd_text =
      cvd ? std::string("CUDA_VISIBLE_DEVICES=") + cvd : std::string("CUDA_VISIBLE_DEVICES unset");
  if (!kernels::cuda_built()) {
    m.text = "no GPU mapping (this build has no CUDA)";
  } else if (m.max_visible == 0) {
    m.text = "no GPU visible to any rank (" + cvd_text + " on rank 0)" +
             (g.query_error.empty() ? "" : ": " + g.query_error);
  } else if (unmapped >= 0) {
    m.text = "rank " + std::to_string(unmapped) + " (" + hosts[unmapped] +
             ") has no GPU of its own: " +
             (problems[unmapped].empty()
                  ? "it sees none (a node without GPUs, or an empty CUDA_VISIBLE_DEVICES). Run "
                    "every rank on a node with GPUs"
                  : problems[unmapped]);
  } else if (shared_a >= 0) {
    m.text = "ranks " + std::to_string(shared_a) + " and " + std::to_string(shared_b) + " (" +
             hosts[shared_a] +
             ") share one GPU. Give each task its own GPU: 'srun --gpus-per-task=1', or "
             "'--gres=gpu:N' with N tasks per node, or fewer ranks per node";
  } else {
    m.text = "one GPU per rank, no two alike (rank 0: local rank " +
             std::to_string(place.local_rank) + " -> CUDA device " + std::to_string(g.gpu) +
             " of " + std::to_string(g.visible) + ", " + cvd_text + ", " + g.uuid + ")";
  }
  m.all_mapped = kernels::cuda_built() && m.max_visible > 0 && unmapped < 0 && shared_a < 0;
  return m;
}

}  // namespace

DeviceChoice choose_device(Device wanted, comm::Communicator& comm, const comm::Placement& place) {
  const LocalGpu g = find_local_gpu(place);
  const Mapping m = agree_mapping(comm, place, g);
  if (wanted == Device::cuda) {
    if (!kernels::cuda_built())
      throw UsageError(
          "--device cuda, but this build has no CUDA (CMake found no nvcc, or "
          "DPT_CUDA=OFF): rebuild with CUDA, or pass --device cpu");
    if (m.max_visible == 0)
      throw UsageError("--device cuda: " + m.text +
                       ". Run on a node with a GPU (Slurm: --gpus-per-task=1 or --gres=gpu:N), "
                       "or pass --device cpu");
    if (!m.all_mapped) throw UsageError("--device cuda: " + m.text);
  }
  // auto takes the GPUs only when every rank has one of its own.
  const bool cuda = wanted == Device::cuda || (wanted == Device::automatic && m.all_mapped);
  DeviceChoice c;
  c.device = cuda ? Device::cuda : Device::cpu;
  c.gpu = cuda ? g.gpu : -1;
  c.summary = std::string("device: ") + device_name(c.device) + " (--device " +
              device_name(wanted) + ")" +
              (wanted == Device::automatic && !cuda && m.max_visible > 0
                   ? "; not every rank has a GPU of its own, so all train on the CPU"
                   : "") +
              " | GPUs: " + m.text;
  if (comm.rank() != 0) c.summary.clear();
  return c;
}

}  // namespace dpt::job
