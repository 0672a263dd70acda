// GELU (tanh approximation, as GPT-2) on the CPU, forward and backward, elementwise.
#include "kernels/gelu.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu_dispatch.h"
#include "kernels/vec_exp.h"

namespace dpt::kernels {
namespace {

// Computed in T through 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)): glibc's tanh
// and tanhf go through expm1 and made GELU a third of a CPU training step, exp is several times
// cheaper, and the sigmoid form has no cancellation in 1 + tanh for large negative inputs.
// With s = sigmoid(2u) = 1 / (1 + e): 1 - tanh(u)^2 = 4 s (1 - s), and 1 - s is taken as e s
// (= e / (1 + e)), which stays exact where s is near 1 (e tiny) and costs no second division;
// where e is huge, s is tiny and so is every term it multiplies.
// exp is the [Vector exp] for float, so both loops run as SIMD code.
template <typename T>
constexpr T kSqrt2OverPi = T(0.7978845608028654);  // sqrt(2 / pi)
template <typename T>
constexpr T kCubic = T(0.044715);

}  // namespace

namespace {

template <typename T>
inline T gelu_value(T x) {
  const T u = kSqrt2OverPi<T> * (x + kCubic<T> * x * x * x);
  return x / (T(1) + exp_of<T>(T(-2) * u));
}

template <typename T>
inline T gelu_grad(T x) {
  const T u = kSqrt2OverPi<T> * (x + kCubic<T> * x * x * x);
  const T e = exp_of<T>(T(-2) * u);
  const T s = T(1) / (T(1) + e);  // 0.5 (1 + tanh u)
  const T one_minus_s = e * s;    // e / (1 + e), no cancellation; one division, not two
  const T du = kSqrt2OverPi<T> * (T(1) + T(3) * kCubic<T> * x * x);
  return s + T(2) * x * s * one_minus_s * du;
}

enum class Pass { forward, backward_add, backward_write };

// Elements [lo, hi): one loop per pass, so that no element tests a condition (a load under a
// condition stops the vectorizer). Always inlined, so that it takes the SIMD width of its
// caller ([CPU dispatch]).
template <typename T>
__attribute__((always_inline)) inline void gelu_span(Pass pass, T* out, const T* inp, const T* dout,
                                                     int64_t lo, int64_t hi) {
  switch (pass) {
    case Pass::forward:
#pragma omp simd
      for (int64_t i = lo; i < hi; ++i)
        out[i] = gelu_value(inp[i]);
      break;
    case Pass::backward_add:
#pragma omp simd
      for (int64_t i = lo; i < hi; ++i)
        out[i] += gelu_grad(inp[i]) * dout[i];
      break;
    case Pass::backward_write:
#pragma omp simd
      for (int64_t i = lo; i < hi; ++i)
        out[i] = gelu_grad(inp[i]) * dout[i];
      break;
  }
}

DPT_AVX2 void gelu_span_avx2(Pass pass, float* out, const float* inp, const float* dout, int64_t lo,
                             int64_t hi) {
  gelu_span<float>(pass, out, inp, dout, lo, hi);
}

// Each thread takes one contiguous share of the elements.
template <typename T>
void gelu_pass(Pass pass, T* out, const T* inp, const T* dout, size_t n) {
  const int64_t count = static_cast<int64_t>(n);
  const bool wide = std::is_same_v<T, float> && cpu_use_avx2();
#pragma omp parallel
  {
    const auto [lo, hi] = thread_share(count);
    if constexpr (std::is_same_v<T, float>) {
      if (wide)
        gelu_span_avx2(pass, out, inp, dout, lo, hi);
      else
        gelu_span<T>(pass, out, inp, dout, lo, hi);
    } else {
      gelu_span<T>(pass, out, inp, dout, lo, hi);
    }
  }
}

}  // namespace

template <typename T>
void gelu_forward_cpu(T* out, const T* inp, size_t n) {
  gelu_pass<T>(Pass::forward, out, inp, nullptr, n);
}

template <typename T>
void gelu_backward_cpu(T* dinp, const T* inp, const T* dout, size_t n, GradInput mode) {
  gelu_pass<T>(mode == GradInput::add ? Pass::backward_add : Pass::backward_write, dinp, inp, dout,
               n);
}

template void gelu_forward_cpu<float>(float*, const float*, size_t);
template void gelu_forward_cpu<double>(double*, const double*, size_t);
template void gelu_backward_cpu<float>(float*, const float*, const float*, size_t, GradInput);
template void gelu_backward_cpu<double>(double*, const double*, const double*, size_t, GradInput);

}  // namespace dpt::kernels
