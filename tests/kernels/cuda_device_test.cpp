// gpu: the CUDA runtime this build links sees a device and names it. Without CUDA in the build
// or without a visible device it reports SKIP (exit 77) with the reason.
#include <cstdio>

#include "kernels/cuda_device.h"

int main() {
  using namespace dpt::kernels;
  if (!cuda_built()) {
    std::printf("SKIP: this build has no CUDA path (DPT_CUDA=OFF or no nvcc)\n");
    return 77;
  }
  const int n = cuda_device_count();
  if (n == 0) {
    std::printf("SKIP: no CUDA device visible (no GPU, no driver, or CUDA_VISIBLE_DEVICES empty)\n");
    return 77;
  }
  for (int i = 0; i < n; ++i) {
    const std::string name = cuda_device_name(i);
    std::printf("device %d: %s\n", i, name.c_str());
    if (name.empty()) {
      std::printf("FAIL: device %d has no name\n", i);
      return 1;
    }
  }
  return 0;
}
