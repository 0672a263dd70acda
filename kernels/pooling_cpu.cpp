// [Pooling] on the CPU: the mean over each sequence's valid positions, summed in t order.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/errors.h"
#include "kernels/pooling.h"

namespace dpt::kernels {

namespace {

int length_of(const int32_t* len, int b, int Tn) {
  if (!len) return Tn;
  const int n = len[b];
  DPT_CHECK(n >= 1 && n <= Tn, "sequence " + std::to_string(b) + " has length " +
                                   std::to_string(n) + ", outside [1, " + std::to_string(Tn) + "]");
  return n;
}

}  // namespace

template <typename T>
void mean_pool_forward_cpu(T* out, const T* x, const int32_t* len, int B, int Tn, int C) {
  for (int b = 0; b < B; ++b) {
    const int n = length_of(len, b, Tn);
    T* o = out + static_cast<size_t>(b) * C;
    for (int c = 0; c < C; ++c)
      o[c] = T(0);
    for (int t = 0; t < n; ++t) {
      const T* row = x + (static_cast<size_t>(b) * Tn + t) * C;
      for (int c = 0; c < C; ++c)
        o[c] += row[c];
    }
    const T inv = T(1) / static_cast<T>(n);
    for (int c = 0; c < C; ++c)
      o[c] *= inv;
  }
}

template <typename T>
void mean_pool_backward_cpu(T* dx, const T* dout, const int32_t* len, int B, int Tn, int C) {
  for (int b = 0; b < B; ++b) {
    const int n = length_of(len, b, Tn);
    const T inv = T(1) / static_cast<T>(n);
    const T* g = dout + static_cast<size_t>(b) * C;
    for (int t = 0; t < n; ++t) {
      T* row = dx + (static_cast<size_t>(b) * Tn + t) * C;
      for (int c = 0; c < C; ++c)
        row[c] += g[c] * inv;
    }
  }
}

template <typename T>
void cls_pool_forward_cpu(T* out, const T* x, int B, int Tn, int C) {
  for (int b = 0; b < B; ++b) {
    const T* row = x + static_cast<size_t>(b) * Tn * C;
    std::copy(row, row + C, out + static_cast<size_t>(b) * C);
  }
}

template <typename T>
void cls_pool_backward_cpu(T* dx, const T* dout, int B, int Tn, int C) {
  for (int b = 0; b < B; ++b) {
    T* row = dx + static_cast<size_t>(b) * Tn * C;
    const T* g = dout + static_cast<size_t>(b) * C;
    for (int c = 0; c < C; ++c)
      row[c] += g[c];
  }
}

template void cls_pool_forward_cpu<float>(float*, const float*, int, int, int);
template void cls_pool_forward_cpu<double>(double*, const double*, int, int, int);
template void cls_pool_backward_cpu<float>(float*, const float*, int, int, int);
template void cls_pool_backward_cpu<double>(double*, const double*, int, int, int);
template void mean_pool_forward_cpu<float>(float*, const float*, const int32_t*, int, int, int);
template void mean_pool_forward_cpu<double>(double*, const double*, const int32_t*, int, int, int);
template void mean_pool_backward_cpu<float>(float*, const float*, const int32_t*, int, int, int);
template void mean_pool_backward_cpu<double>(double*, const double*, const int32_t*, int, int, int);

}  // namespace dpt::kernels
