// GELU, tanh approximation (as GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
#pragma once

#include <cstddef>
#include "kernels/cuda_stream.h"
#include "kernels/grad_input.h"

namespace dpt::kernels {

template <typename T>
void gelu_forward_cpu(T* out, const T* inp, size_t n);

// dinp[i] += dout[i] * gelu'(inp[i]); with GradInput::write, dinp[i] = ... ([Gradient write]).
template <typename T>
void gelu_backward_cpu(T* dinp, const T* inp, const T* dout, size_t n,
                       GradInput mode = GradInput::add);

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
template <typename T>  // float or __nv_bfloat16
void gelu_forward_cuda(T* out, const T* inp, size_t n, CudaStream stream);
template <typename T>
void gelu_backward_cuda(T* dinp, const T* inp, const T* dout, size_t n, CudaStream stream,
                        GradInput mode = GradInput::add);

}  // namespace dpt::kernels
