// Device discovery through the CUDA runtime.
#include <cstdio>

#include "kernels/cuda_check.h"
#include "kernels/cuda_device.h"

namespace dpt::kernels {

bool cuda_built() {
  return true;
}

int cuda_device_count() {
  int n = 0;
  const cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc == cudaErrorNoDevice || rc == cudaErrorInsufficientDriver ||
      rc == cudaErrorInitializationError || rc == cudaErrorSystemDriverMismatch ||
      rc == cudaErrorCompatNotSupportedOnDevice) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  DPT_CHECK_CUDA(rc);
  return n;
}

std::string cuda_device_name(int index) {
  cudaDeviceProp prop{};
  DPT_CHECK_CUDA(cudaGetDeviceProperties(&prop, index));
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%s (sm_%d%d, %.1f GiB)", prop.name, prop.major, prop.minor,
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

}  // namespace dpt::kernels
