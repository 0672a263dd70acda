// gpu: the CUDA runtime this build links sees a device and names it. Without CUDA in the build
// or without a visible device it reports SKIP (exit 77) with the reason.
#include <cstdio>

#include "kernels/cuda_device.h"

int main() {
  using namespace dpt::kernels;
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) {
    std::printf("SKIP: %s\n", why.c_str());
    return 77;
  }
  const int n = cuda_device_count();
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
