// Device discovery in a build without CUDA: nothing is visible.
#include "kernels/cuda_device.h"

#include "common/errors.h"

namespace dpt::kernels {

bool cuda_built() {
  return false;
}
int cuda_device_count() {
  return 0;
}
std::string cuda_device_name(int index) {
  throw RuntimeFailure("cuda_device_name(" + std::to_string(index) +
                       "): this build has no CUDA path (configured with DPT_CUDA=OFF or no nvcc)");
}

std::string cuda_device_uuid(int index) {
  return cuda_device_name(index);  // throws the same explanation
}

CudaMemory cuda_memory(int index) {
  cuda_device_name(index);  // throws the same explanation
  return {};
}

}  // namespace dpt::kernels
