// [Mean squared error] The regression head's loss: per sample, the mean over its K targets of
// (prediction - target)^2; the caller averages the samples (as the cross-entropy's per-position
// losses are averaged). Targets stay fp32 whatever the compute type.
#pragma once

#include "kernels/cuda_stream.h"

namespace dpt::kernels {

// loss[b] = (1/K) sum_k (pred[b, k] - target[b, k])^2.
template <typename T>
void mse_forward_cpu(T* loss, const T* pred, const T* target, int B, int K);
// dpred[b, k] += scale * 2 (pred[b, k] - target[b, k]) / K, scale being d(objective)/d(loss[b])
// (1/B for the batch mean).
template <typename T>
void mse_backward_cpu(T* dpred, const T* pred, const T* target, int B, int K, double scale);

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
// loss is fp32 (one value per sample, each summed by one thread in k order: deterministic).
template <typename T>  // float or __nv_bfloat16
void mse_forward_cuda(float* loss, const T* pred, const float* target, int B, int K,
                      CudaStream stream);
template <typename T>
void mse_backward_cuda(T* dpred, const T* pred, const float* target, int B, int K, float scale,
                       CudaStream stream);

}  // namespace dpt::kernels
