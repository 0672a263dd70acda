// GELU, tanh approximation (as GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
#pragma once

#include <cstddef>

namespace dpt::kernels {

template <typename T>
void gelu_forward_cpu(T* out, const T* inp, size_t n);

// dinp[i] += dout[i] * gelu'(inp[i])
template <typename T>
void gelu_backward_cpu(T* dinp, const T* inp, const T* dout, size_t n);

}  // namespace dpt::kernels
