// [Mean squared error] on the GPU: forward one thread per sample, summing its K squared errors in
// k order in fp32 (deterministic); backward one thread per element.
#include <cuda_bf16.h>

#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/mse.h"

namespace dpt::kernels {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 8192;

using namespace cuda_detail;

template <typename T>
__global__ void mse_forward_kernel(float* loss, const T* pred, const float* target, int B, int K) {
  const int stride = static_cast<int>(gridDim.x * blockDim.x);
  for (int b = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); b < B; b += stride) {
    float s = 0.0f;
    for (int k = 0; k < K; ++k) {
      const size_t i = static_cast<size_t>(b) * K + k;
      const float d = to_f(pred[i]) - target[i];
      s += d * d;
    }
    loss[b] = s / static_cast<float>(K);
  }
}

template <typename T>
__global__ void mse_backward_kernel(T* dpred, const T* pred, const float* target, size_t n,
                                    float f) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dpred[i] = from_f<T>(to_f(dpred[i]) + f * (to_f(pred[i]) - target[i]));
}

}  // namespace

template <typename T>
void mse_forward_cuda(float* loss, const T* pred, const float* target, int B, int K,
                      CudaStream stream) {
  DPT_CHECK(B >= 0 && K > 0, "mse_forward_cuda: bad shape");
  if (B == 0) return;
  DPT_CHECK(loss && pred && target, "mse_forward_cuda: null pointer");
  mse_forward_kernel<T>
      <<<grid_stride_blocks(static_cast<size_t>(B), kThreads, kMaxBlocks), kThreads, 0, stream>>>(
          loss, pred, target, B, K);
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void mse_backward_cuda(T* dpred, const T* pred, const float* target, int B, int K, float scale,
                       CudaStream stream) {
  DPT_CHECK(B >= 0 && K > 0, "mse_backward_cuda: bad shape");
  if (B == 0) return;
  DPT_CHECK(dpred && pred && target, "mse_backward_cuda: null pointer");
  const size_t n = static_cast<size_t>(B) * K;
  mse_backward_kernel<T><<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(
      dpred, pred, target, n, 2.0f * scale / static_cast<float>(K));
  DPT_CHECK_LAUNCH(stream);
}

template void mse_forward_cuda<float>(float*, const float*, const float*, int, int, CudaStream);
template void mse_forward_cuda<__nv_bfloat16>(float*, const __nv_bfloat16*, const float*, int, int,
                                              CudaStream);
template void mse_backward_cuda<float>(float*, const float*, const float*, int, int, float,
                                       CudaStream);
template void mse_backward_cuda<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*, const float*,
                                               int, int, float, CudaStream);

}  // namespace dpt::kernels
