// What the CUDA runtime can see: the build's CUDA switch and the visible devices.
#pragma once

#include <cstddef>
#include <string>

namespace dpt::kernels {

// True when this binary was built with the CUDA path.
bool cuda_built();

// Number of CUDA devices this process can use (honours CUDA_VISIBLE_DEVICES). 0 when the build
// has no CUDA, no driver is loaded or no device is present; other runtime errors throw.
int cuda_device_count();

// Why this process cannot use `needed` CUDA devices, for SKIP lines and messages ("" when it
// can): no CUDA in the build, or fewer devices visible. Throws what cuda_device_count() throws.
inline std::string cuda_unavailable_reason(int needed = 1) {
  if (!cuda_built()) return "this build has no CUDA path (DPT_CUDA=OFF or no nvcc)";
  const int n = cuda_device_count();
  if (n == 0) return "no CUDA device visible (no GPU, no driver, or CUDA_VISIBLE_DEVICES empty)";
  if (n < needed)
    return std::to_string(n) + " CUDA device(s) visible, " + std::to_string(needed) + " needed";
  return "";
}

// "NVIDIA H100 80GB HBM3 (sm_90, 79.2 GiB)" for device `index`.
std::string cuda_device_name(int index);

// "GPU-8c1f5e2a-..." as nvidia-smi prints it: the same physical GPU has the same UUID in
// every process, whatever CUDA_VISIBLE_DEVICES renumbers.
std::string cuda_device_uuid(int index);

struct CudaMemory {
  size_t free = 0, total = 0;  // bytes, cudaMemGetInfo of the device
};
// Free and total memory of device `index` now (the calling thread's current device is kept).
CudaMemory cuda_memory(int index);

}  // namespace dpt::kernels
