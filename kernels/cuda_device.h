// What the CUDA runtime can see: the build's CUDA switch and the visible devices.
#pragma once

#include <string>

namespace dpt::kernels {

// True when this binary was built with the CUDA path.
bool cuda_built();

// Number of CUDA devices this process can use (honours CUDA_VISIBLE_DEVICES). 0 when the build
// has no CUDA, no driver is loaded or no device is present; other runtime errors throw.
int cuda_device_count();

// "NVIDIA H100 80GB HBM3 (sm_90, 79.2 GiB)" for device `index`.
std::string cuda_device_name(int index);

// "GPU-8c1f5e2a-..." as nvidia-smi prints it: the same physical GPU has the same UUID in
// every process, whatever CUDA_VISIBLE_DEVICES renumbers.
std::string cuda_device_uuid(int index);

}  // namespace dpt::kernels
