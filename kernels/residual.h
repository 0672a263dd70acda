// Residual connection: out = a + b.
#pragma once

#include <cstddef>
#include "kernels/cuda_stream.h"

namespace dpt::kernels {

template <typename T>
void residual_forward_cpu(T* out, const T* a, const T* b, size_t n);

// da[i] += dout[i]; db[i] += dout[i]
template <typename T>
void residual_backward_cpu(T* da, T* db, const T* dout, size_t n);

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
template <typename T>  // float or __nv_bfloat16
void residual_forward_cuda(T* out, const T* a, const T* b, size_t n, CudaStream stream);
template <typename T>
void residual_backward_cuda(T* da, T* db, const T* dout, size_t n, CudaStream stream);

}  // namespace dpt::kernels
