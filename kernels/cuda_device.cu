// Device discovery through the CUDA runtime.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/cuda_device.h"

namespace dpt::kernels {

bool cuda_built() {
  return true;
}

bool sync_check_launches() {
  // Read once: the launchers ask on every launch.
  static const bool on = [] {
    const char* v = std::getenv("DPT_CUDA_SYNC_CHECK");
    const bool set = v != nullptr && v[0] != '\0' && std::string(v) != "0";
    if (set)
      std::fprintf(stderr,
                   "dptrain: DPT_CUDA_SYNC_CHECK: every kernel launch is checked "
                   "after its stream synchronizes (slow; for first runs)\n");
    return set;
  }();
  return on;
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

std::string cuda_device_uuid(int index) {
  cudaDeviceProp prop{};
  DPT_CHECK_CUDA(cudaGetDeviceProperties(&prop, index));
  const auto* u = reinterpret_cast<const unsigned char*>(prop.uuid.bytes);
  char buf[64];
  std::snprintf(buf, sizeof(buf),
                "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
                u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
                u[14], u[15]);
  return buf;
}

CudaMemory cuda_memory(int index) {
  int current = 0;
  DPT_CHECK_CUDA(cudaGetDevice(&current));
  DPT_CHECK_CUDA(cudaSetDevice(index));
  CudaMemory m;
  const cudaError_t rc = cudaMemGetInfo(&m.free, &m.total);
  DPT_CHECK_CUDA(cudaSetDevice(current));
  DPT_CHECK_CUDA(rc);
  return m;
}

}  // namespace dpt::kernels
