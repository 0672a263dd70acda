// [Pooling] A sequence's rows [T, C] to one row [C] for the classification and regression heads:
// the mean over its first len positions (padding past them gets no weight), or its first row
// (the class token, [Positions]). len null means every sequence is T long.
#pragma once

#include <cstdint>

#include "kernels/cuda_stream.h"

namespace dpt::kernels {

// out[b, c] = mean over t < len[b] of x[b, t, c]; len[b] in [1, T] (checked).
template <typename T>
void mean_pool_forward_cpu(T* out, const T* x, const int32_t* len, int B, int Tn, int C);
// dx[b, t, c] += dout[b, c] / len[b] for t < len[b]; positions past len[b] get nothing.
template <typename T>
void mean_pool_backward_cpu(T* dx, const T* dout, const int32_t* len, int B, int Tn, int C);

// out[b, c] = x[b, 0, c]: the class token's row of each sequence.
template <typename T>
void cls_pool_forward_cpu(T* out, const T* x, int B, int Tn, int C);
// dx[b, 0, c] += dout[b, c].
template <typename T>
void cls_pool_backward_cpu(T* dx, const T* dout, int B, int Tn, int C);

// --- CUDA ([CUDA kernel contract], kernels/README.md); len is a device array or null ---------
template <typename T>  // float or __nv_bfloat16; sums in fp32
void mean_pool_forward_cuda(T* out, const T* x, const int32_t* len, int B, int Tn, int C,
                            CudaStream stream);
template <typename T>
void mean_pool_backward_cuda(T* dx, const T* dout, const int32_t* len, int B, int Tn, int C,
                             CudaStream stream);

template <typename T>
void cls_pool_forward_cuda(T* out, const T* x, int B, int Tn, int C, CudaStream stream);
template <typename T>
void cls_pool_backward_cuda(T* dx, const T* dout, int B, int Tn, int C, CudaStream stream);

}  // namespace dpt::kernels
