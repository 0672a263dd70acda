// AdamW update (Loshchilov & Hutter, decoupled weight decay) and the squared L2 norm used for
// global gradient-norm clipping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>
#include "kernels/cuda_stream.h"

namespace dpt::kernels {

// Sum of squares of x[0..n), accumulated in double in a fixed order (deterministic for a fixed
// thread count).
template <typename T>
double sum_squares_cpu(const T* x, size_t n);

struct AdamWParams {
  double lr;            // learning rate of this step
  double beta1;         // first-moment decay, e.g. 0.9
  double beta2;         // second-moment decay, e.g. 0.95
  double eps;           // e.g. 1e-8
  double weight_decay;  // decoupled decay of this tensor (0 for tensors exempt from decay)
  double grad_scale;    // multiplies every gradient first (clipping factor)
  long step;            // 1-based optimizer step, for bias correction
};

// For each i, with g = grad[i] * grad_scale:
//   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
//   mhat = m / (1 - beta1^step);   vhat = v / (1 - beta2^step)
//   param -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * param)
// param, m, v are updated in place.
template <typename T>
void adamw_update_cpu(T* param, T* m, T* v, const T* grad, size_t n, const AdamWParams& p);

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
// Floats of scratch sum_squares_cuda needs.
size_t sum_squares_scratch_floats(size_t n);
// *out = sum of x[i]^2 (fp32, written), per-block partials reduced in block order.
void sum_squares_cuda(float* out, const float* x, size_t n, float* scratch, CudaStream stream);

// [Fused AdamW] One launch updates the whole flat buffer. It is cut into chunks on the host
// once (adamw_chunks); each chunk lies inside one tensor and carries that tensor's weight decay.
struct AdamWChunk {
  uint64_t offset;  // first element
  uint32_t n;       // elements (at most kAdamWChunk)
  float weight_decay;
};
inline constexpr uint32_t kAdamWChunk = 65536;

struct AdamWCudaParams {
  float lr, beta1, beta2, eps;
  float bias_correction1;  // 1 - beta1^step
  float bias_correction2;  // 1 - beta2^step
  float grad_clip;         // 0: no clipping
};

// For every element, with norm = sqrt(*grad_sumsq) and clip = clip_factor(norm, grad_clip) as
// trainer/optimizer.cpp defines it (grad_clip / (norm + 1e-6) above the threshold, else 1):
// the CPU update of adamw_update_cpu with grad_scale = clip. When *loss or the norm is not
// finite nothing is written ([Non-finite guard]). params_copy (nullable) receives the updated
// parameters in TP (the bf16 compute copy).
template <typename TP>
void adamw_update_cuda(float* params, TP* params_copy, float* m, float* v, const float* grads,
                       const AdamWChunk* chunks, int n_chunks, const float* grad_sumsq,
                       const float* loss, AdamWCudaParams p, CudaStream stream);

// Converts n floats to TP (float copy, or round-to-nearest-even bf16).
template <typename TP>
void convert_params_cuda(TP* out, const float* in, size_t n, CudaStream stream);

// A contiguous run of the flat buffer with one weight decay (one tensor, say).
struct AdamWSegment {
  size_t offset;
  size_t n;
  float weight_decay;
};
// Cuts segments into chunks of at most kAdamWChunk elements, in order.
std::vector<AdamWChunk> adamw_chunks(const std::vector<AdamWSegment>& segments);

}  // namespace dpt::kernels
