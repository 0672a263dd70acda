// [Pooling] on the GPU: forward one thread per (sequence, channel), summing its valid positions
// in t order in fp32 (deterministic, and coalesced over c); backward one thread per element.
// Lengths outside [1, T] are clamped here (the host checks them where it builds them).
#include <cuda_bf16.h>

#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/pooling.h"

namespace dpt::kernels {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 8192;

using namespace cuda_detail;

__device__ __forceinline__ int valid_length(const int32_t* len, int b, int Tn) {
  return len ? min(max(len[b], 1), Tn) : Tn;
}

template <typename T>
__global__ void mean_pool_forward_kernel(T* out, const T* x, const int32_t* len, int B, int Tn,
                                         int C) {
  const size_t n = static_cast<size_t>(B) * C;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t k = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += stride) {
    const int b = static_cast<int>(k / C), c = static_cast<int>(k % C);
    const int L = valid_length(len, b, Tn);
    float s = 0.0f;
    for (int t = 0; t < L; ++t)
      s += to_f(x[(static_cast<size_t>(b) * Tn + t) * C + c]);
    out[k] = from_f<T>(s / static_cast<float>(L));
  }
}

template <typename T>
__global__ void mean_pool_backward_kernel(T* dx, const T* dout, const int32_t* len, int B, int Tn,
                                          int C) {
  const size_t n = static_cast<size_t>(B) * Tn * C;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t k = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += stride) {
    const int c = static_cast<int>(k % C);
    const size_t bt = k / C;
    const int t = static_cast<int>(bt % Tn), b = static_cast<int>(bt / Tn);
    const int L = valid_length(len, b, Tn);
    if (t < L)
      dx[k] = from_f<T>(to_f(dx[k]) +
                        to_f(dout[static_cast<size_t>(b) * C + c]) / static_cast<float>(L));
  }
}

// One thread per (sequence, channel) in both directions.
template <typename T>
__global__ void cls_pool_kernel(T* out, const T* x, int B, int Tn, int C, bool backward) {
  const size_t n = static_cast<size_t>(B) * C;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t k = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += stride) {
    const size_t row0 = (k / C) * Tn * C + k % C;
    if (backward) {
      out[row0] = from_f<T>(to_f(out[row0]) + to_f(x[k]));  // out = dx, x = dout
    } else {
      out[k] = x[row0];
    }
  }
}

}  // namespace

template <typename T>
void cls_pool_forward_cuda(T* out, const T* x, int B, int Tn, int C, CudaStream stream) {
  DPT_CHECK(B >= 0 && Tn > 0 && C >= 0, "cls_pool_forward_cuda: bad shape");
  if (B == 0 || C == 0) return;
  DPT_CHECK(out && x, "cls_pool_forward_cuda: null pointer");
  const size_t n = static_cast<size_t>(B) * C;
  cls_pool_kernel<T><<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(
      out, x, B, Tn, C, false);
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void cls_pool_backward_cuda(T* dx, const T* dout, int B, int Tn, int C, CudaStream stream) {
  DPT_CHECK(B >= 0 && Tn > 0 && C >= 0, "cls_pool_backward_cuda: bad shape");
  if (B == 0 || C == 0) return;
  DPT_CHECK(dx && dout, "cls_pool_backward_cuda: null pointer");
  const size_t n = static_cast<size_t>(B) * C;
  cls_pool_kernel<T><<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(
      dx, dout, B, Tn, C, true);
  DPT_CHECK_LAUNCH(stream);
}

template void cls_pool_forward_cuda<float>(float*, const float*, int, int, int, CudaStream);
template void cls_pool_forward_cuda<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*, int, int,
                                                   int, CudaStream);
template void cls_pool_backward_cuda<float>(float*, const float*, int, int, int, CudaStream);
template void cls_pool_backward_cuda<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*, int, int,
                                                    int, CudaStream);

template <typename T>
void mean_pool_forward_cuda(T* out, const T* x, const int32_t* len, int B, int Tn, int C,
                            CudaStream stream) {
  DPT_CHECK(B >= 0 && Tn > 0 && C >= 0, "mean_pool_forward_cuda: bad shape");
  if (B == 0 || C == 0) return;
  DPT_CHECK(out && x, "mean_pool_forward_cuda: null pointer");
  const size_t n = static_cast<size_t>(B) * C;
  mean_pool_forward_kernel<T>
      <<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(out, x, len, B, Tn, C);
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void mean_pool_backward_cuda(T* dx, const T* dout, const int32_t* len, int B, int Tn, int C,
                             CudaStream stream) {
  DPT_CHECK(B >= 0 && Tn > 0 && C >= 0, "mean_pool_backward_cuda: bad shape");
  if (B == 0 || C == 0) return;
  DPT_CHECK(dx && dout, "mean_pool_backward_cuda: null pointer");
  const size_t n = static_cast<size_t>(B) * Tn * C;
  mean_pool_backward_kernel<T>
      <<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(dx, dout, len, B, Tn,
                                                                             C);
  DPT_CHECK_LAUNCH(stream);
}

template void mean_pool_forward_cuda<float>(float*, const float*, const int32_t*, int, int, int,
                                            CudaStream);
template void mean_pool_forward_cuda<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*,
                                                    const int32_t*, int, int, int, CudaStream);
template void mean_pool_backward_cuda<float>(float*, const float*, const int32_t*, int, int, int,
                                             CudaStream);
template void mean_pool_backward_cuda<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*,
                                                     const int32_t*, int, int, int, CudaStream);

}  // namespace dpt::kernels
