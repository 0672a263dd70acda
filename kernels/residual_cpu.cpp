// Residual connection on the CPU: out = a + b forward; backward the gradient passes to both.
#include "kernels/residual.h"

#include <cstddef>
#include <cstdint>

namespace dpt::kernels {

template <typename T>
void residual_forward_cpu(T* out, const T* a, const T* b, size_t n) {
  const int64_t count = static_cast<int64_t>(n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    out[i] = a[i] + b[i];
  }
}

template <typename T>
void residual_backward_cpu(T* da, T* db, const T* dout, size_t n) {
  const int64_t count = static_cast<int64_t>(n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    // Read dout once: the result stays right when da or db is the dout buffer itself.
    const T g = dout[i];
    da[i] += g;
    db[i] += g;
  }
}

template void residual_forward_cpu<float>(float*, const float*, const float*, size_t);
template void residual_forward_cpu<double>(double*, const double*, const double*, size_t);
template void residual_backward_cpu<float>(float*, float*, const float*, size_t);
template void residual_backward_cpu<double>(double*, double*, const double*, size_t);

}  // namespace dpt::kernels
