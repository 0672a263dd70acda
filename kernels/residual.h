// Residual connection: out = a + b.
#pragma once

#include <cstddef>

namespace dpt::kernels {

template <typename T>
void residual_forward_cpu(T* out, const T* a, const T* b, size_t n);

// da[i] += dout[i]; db[i] += dout[i]
template <typename T>
void residual_backward_cpu(T* da, T* db, const T* dout, size_t n);

}  // namespace dpt::kernels
