// Linear layer on the CPU (torch.nn.Linear layout): the three products go through gemm_cpu, the
// bias gradient is a deterministic column sum.
#include "kernels/linear.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "common/errors.h"

#include "kernels/gemm.h"

namespace dpt::kernels {
namespace {

// Output channels per block of the bias-gradient reduction; the stack accumulator is this long.
constexpr int kChannelBlock = 32;

}  // namespace

template <typename T>
void linear_forward_cpu(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC,
                        int ld_out) {
  const int ldo = ld_out == 0 ? OC : ld_out;
  DPT_CHECK(ldo >= OC, "linear: ld_out " + std::to_string(ldo) + " < OC " + std::to_string(OC));
  // out = inp weight^T; beta = 0 overwrites whatever out held.
  gemm_cpu<T>(false, true, N, OC, C, T(1), inp, C, weight, C, T(0), out, ldo);
  if (bias == nullptr) return;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    T* o = out + static_cast<size_t>(n) * ldo;
    for (int j = 0; j < OC; ++j) {
      o[j] += bias[j];
    }
  }
}

template <typename T>
void linear_backward_cpu(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                         const T* weight, int N, int C, int OC, GradInput dinp_mode, int ld_out) {
  const int ldo = ld_out == 0 ? OC : ld_out;
  DPT_CHECK(ldo >= OC, "linear: ld_out " + std::to_string(ldo) + " < OC " + std::to_string(OC));
  // beta = 1: backward adds into the gradients (the [Kernel contract]); beta = 0 writes dinp
  // without reading it ([Gradient write]).
  if (dinp != nullptr) {
    const T beta = dinp_mode == GradInput::add ? T(1) : T(0);
    gemm_cpu<T>(false, false, N, C, OC, T(1), dout, ldo, weight, C, beta, dinp, C);
  }
  gemm_cpu<T>(true, false, OC, C, N, T(1), dout, ldo, inp, C, T(1), dweight, C);
  if (dbias == nullptr) return;

  // Column sums of dout: one loop iteration per block of output channels walks all rows in
  // order, accumulating in double, so the bits do not depend on the schedule or thread count.
  const int blocks = (OC + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < blocks; ++blk) {
    const int j0 = blk * kChannelBlock;
    const int width = std::min(kChannelBlock, OC - j0);
    double acc[kChannelBlock] = {};
    for (int n = 0; n < N; ++n) {
      const T* g = dout + static_cast<size_t>(n) * ldo + j0;
      for (int j = 0; j < width; ++j) {
        acc[j] += g[j];
      }
    }
    for (int j = 0; j < width; ++j) {
      dbias[j0 + j] += static_cast<T>(acc[j]);
    }
  }
}

template void linear_forward_cpu<float>(float*, const float*, const float*, const float*, int, int,
                                        int, int);
template void linear_forward_cpu<double>(double*, const double*, const double*, const double*, int,
                                         int, int, int);
template void linear_backward_cpu<float>(float*, float*, float*, const float*, const float*,
                                         const float*, int, int, int, GradInput, int);
template void linear_backward_cpu<double>(double*, double*, double*, const double*, const double*,
                                          const double*, int, int, int, GradInput, int);

}  // namespace dpt::kernels
