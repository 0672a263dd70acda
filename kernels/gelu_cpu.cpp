// GELU (tanh approximation, as GPT-2) on the CPU, forward and backward, elementwise.
#include "kernels/gelu.h"

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace dpt::kernels {
namespace {

constexpr double kSqrt2OverPi = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kCubic = 0.044715;

}  // namespace

template <typename T>
void gelu_forward_cpu(T* out, const T* inp, size_t n) {
  const int64_t count = static_cast<int64_t>(n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    const double x = inp[i];
    const double u = kSqrt2OverPi * (x + kCubic * x * x * x);
    out[i] = static_cast<T>(0.5 * x * (1.0 + std::tanh(u)));
  }
}

template <typename T>
void gelu_backward_cpu(T* dinp, const T* inp, const T* dout, size_t n) {
  const int64_t count = static_cast<int64_t>(n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    const double x = inp[i];
    const double u = kSqrt2OverPi * (x + kCubic * x * x * x);
    const double th = std::tanh(u);
    const double du = kSqrt2OverPi * (1.0 + 3.0 * kCubic * x * x);
    const double grad = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du;
    dinp[i] += static_cast<T>(grad * dout[i]);
  }
}

template void gelu_forward_cpu<float>(float*, const float*, size_t);
template void gelu_forward_cpu<double>(double*, const double*, size_t);
template void gelu_backward_cpu<float>(float*, const float*, const float*, size_t);
template void gelu_backward_cpu<double>(double*, const double*, const double*, size_t);

}  // namespace dpt::kernels
