// Fused AdamW over the flat parameter buffer on the GPU, the squared gradient norm it clips
// with, and the fp32 -> compute-dtype parameter copy. The norm, the clip factor and the
// [Non-finite guard] are evaluated on the device, so the host never waits for the gradient norm.
#include <cuda_bf16.h>

#include <cstdint>
#include <string>

#include "kernels/adamw.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"

namespace dpt::kernels {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 4096;  // grid-stride loops cover the rest
constexpr int kAdamWThreads = 512;     // one block per chunk of at most kAdamWChunk elements

// [Sum of squares] Per-block partials over a grid that depends on n only, then one block
// reduces the partials in block order: the same bits in every run for the same buffer.
constexpr int kSumSqThreads = 512;
constexpr size_t kSumSqPerBlock =
    static_cast<size_t>(kSumSqThreads) * 16;  // elements a block takes
constexpr unsigned kSumSqMaxBlocks = 1024;    // also the thread count of the final block

unsigned sum_squares_blocks(size_t n) {
  const size_t b = (n + kSumSqPerBlock - 1) / kSumSqPerBlock;
  return static_cast<unsigned>(b < 1 ? 1 : (b > kSumSqMaxBlocks ? kSumSqMaxBlocks : b));
}

using namespace cuda_detail;

// Thread g of the grid sums elements g, g + G, g + 2G, ... (float4 packs when VEC = 4, then the
// last n % 4 elements singly); partials[blockIdx.x] receives the block's sum.
template <int VEC>
__global__ void __launch_bounds__(kSumSqThreads)
    sum_squares_partial_kernel(float* partials, const float* x, size_t n) {
  const size_t first = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  const size_t packs = n / VEC;
  float acc = 0.0f;
  if constexpr (VEC == 4) {
    for (size_t k = first; k < packs; k += stride) {
      const float4 p = reinterpret_cast<const float4*>(x)[k];
      acc += p.x * p.x + p.y * p.y + p.z * p.z + p.w * p.w;
    }
  } else {
    for (size_t k = first; k < packs; k += stride)
      acc += x[k] * x[k];
  }
  for (size_t i = packs * VEC + first; i < n; i += stride)
    acc += x[i] * x[i];
  const float total = block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void __launch_bounds__(kSumSqMaxBlocks)
    sum_squares_final_kernel(float* out, const float* partials, int count) {
  float acc = 0.0f;
  for (int i = threadIdx.x; i < count; i += blockDim.x)
    acc += partials[i];
  const float total = block_sum(acc);
  if (threadIdx.x == 0) *out = total;
}

// One block per chunk. Every block evaluates the guard and the clip factor from the same two
// device scalars, so either all blocks write or none does ([Non-finite guard]).
template <typename TP>
__global__ void __launch_bounds__(kAdamWThreads)
    adamw_kernel(float* params, TP* params_copy, float* m, float* v, const float* grads,
                 const AdamWChunk* chunks, const float* grad_sumsq, const float* loss,
                 AdamWCudaParams p) {
  const float norm = sqrtf(*grad_sumsq);
  if (!isfinite(norm)) return;
  if (loss != nullptr && !isfinite(*loss)) return;
  // clip_factor of trainer/optimizer.cpp: grad_clip / (norm + 1e-6) above the threshold, else 1.
  const float clip =
      (p.grad_clip > 0.0f && norm > p.grad_clip) ? p.grad_clip / (norm + 1e-6f) : 1.0f;
  const AdamWChunk c = chunks[blockIdx.x];
  for (uint32_t i = threadIdx.x; i < c.n; i += blockDim.x) {
    const size_t k = c.offset + i;
    const float g = grads[k] * clip;
    const float mi = p.beta1 * m[k] + (1.0f - p.beta1) * g;
    const float vi = p.beta2 * v[k] + (1.0f - p.beta2) * g * g;
    m[k] = mi;
    v[k] = vi;
    const float mhat = mi / p.bias_correction1;
    const float vhat = vi / p.bias_correction2;
    const float w = params[k];
    const float updated = w - p.lr * (mhat / (sqrtf(vhat) + p.eps) + c.weight_decay * w);
    params[k] = updated;
    if (params_copy != nullptr) params_copy[k] = from_f<TP>(updated);
  }
}

template <typename TP>
__global__ void convert_kernel(TP* out, const float* in, size_t n) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = from_f<TP>(in[i]);
  }
}

}  // namespace

size_t sum_squares_scratch_floats(size_t n) {
  return sum_squares_blocks(n);
}

void sum_squares_cuda(float* out, const float* x, size_t n, float* scratch, CudaStream stream) {
  DPT_CHECK(out && scratch && (x || n == 0), "sum_squares_cuda: null pointer");
  const unsigned blocks = sum_squares_blocks(n);
  if (aligned16(x)) {
    sum_squares_partial_kernel<4><<<blocks, kSumSqThreads, 0, stream>>>(scratch, x, n);
  } else {
    sum_squares_partial_kernel<1><<<blocks, kSumSqThreads, 0, stream>>>(scratch, x, n);
  }
  DPT_CHECK_LAUNCH(stream);
  sum_squares_final_kernel<<<1, kSumSqMaxBlocks, 0, stream>>>(out, scratch,
                                                              static_cast<int>(blocks));
  DPT_CHECK_LAUNCH(stream);
}

template <typename TP>
void adamw_update_cuda(float* params, TP* params_copy, float* m, float* v, const float* grads,
                       const AdamWChunk* chunks, int n_chunks, const float* grad_sumsq,
                       const float* loss, AdamWCudaParams p, CudaStream stream) {
  DPT_CHECK(n_chunks >= 0, "adamw_update_cuda: n_chunks=" + std::to_string(n_chunks));
  DPT_CHECK(params && m && v && grads && chunks && grad_sumsq, "adamw_update_cuda: null pointer");
  DPT_CHECK(p.bias_correction1 > 0.0f && p.bias_correction2 > 0.0f,
            "adamw_update_cuda: bias corrections must be positive (1 - beta^step with step >= 1), "
            "got " +
                std::to_string(p.bias_correction1) + ", " + std::to_string(p.bias_correction2));
  if (n_chunks == 0) return;
  adamw_kernel<TP><<<static_cast<unsigned>(n_chunks), kAdamWThreads, 0, stream>>>(
      params, params_copy, m, v, grads, chunks, grad_sumsq, loss, p);
  DPT_CHECK_LAUNCH(stream);
}

template <typename TP>
void convert_params_cuda(TP* out, const float* in, size_t n, CudaStream stream) {
  if (n == 0) return;
  DPT_CHECK(out && in, "convert_params_cuda: null pointer");
  convert_kernel<TP>
      <<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(out, in, n);
  DPT_CHECK_LAUNCH(stream);
}

template void adamw_update_cuda<float>(float*, float*, float*, float*, const float*,
                                       const AdamWChunk*, int, const float*, const float*,
                                       AdamWCudaParams, CudaStream);
template void adamw_update_cuda<__nv_bfloat16>(float*, __nv_bfloat16*, float*, float*, const float*,
                                               const AdamWChunk*, int, const float*, const float*,
                                               AdamWCudaParams, CudaStream);
template void convert_params_cuda<float>(float*, const float*, size_t, CudaStream);
template void convert_params_cuda<__nv_bfloat16>(__nv_bfloat16*, const float*, size_t, CudaStream);

}  // namespace dpt::kernels
