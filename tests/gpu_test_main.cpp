// The shared main() of GPU test binaries: without a CUDA build or a visible device it prints
// why and exits 77, which ctest reports as skipped (SKIP_RETURN_CODE); else it runs the tests.
#include <gtest/gtest.h>

#include <cstdio>

#include "kernels/cuda_device.h"

int main(int argc, char** argv) {
  using namespace dpt::kernels;
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) {
    std::printf("SKIP: %s\n", why.c_str());
    return 77;
  }
  std::printf("device 0: %s\n", cuda_device_name(0).c_str());
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
