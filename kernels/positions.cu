// [Positions] on the GPU: forward one thread per output element; backward one thread per
// (position, channel) summing the batch in b order in fp32 (deterministic), and one thread per
// element for demb.
#include <cuda_bf16.h>

#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/positions.h"

namespace dpt::kernels {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 8192;

using namespace cuda_detail;

template <typename T>
__global__ void positions_forward_kernel(T* x, const T* emb, const T* cls, const T* wpe, int B,
                                         int Tin, int C, int off) {
  const int Tx = Tin + off;
  const size_t n = static_cast<size_t>(B) * Tx * C;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t k = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += stride) {
    const int c = static_cast<int>(k % C);
    const size_t bt = k / C;
    const int t = static_cast<int>(bt % Tx), b = static_cast<int>(bt / Tx);
    const float in =
        t < off ? to_f(cls[c]) : to_f(emb[(static_cast<size_t>(b) * Tin + (t - off)) * C + c]);
    x[k] = from_f<T>(in + to_f(wpe[static_cast<size_t>(t) * C + c]));
  }
}

template <typename T>
__global__ void positions_backward_params_kernel(float* dcls, float* dwpe, const T* dx, int B,
                                                 int Tin, int C, int off) {
  const int Tx = Tin + off;
  const size_t n = static_cast<size_t>(Tx) * C;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t k = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += stride) {
    const int t = static_cast<int>(k / C);
    float s = 0.0f;
    for (int b = 0; b < B; ++b)
      s += to_f(dx[static_cast<size_t>(b) * Tx * C + k]);
    dwpe[k] += s;
    if (t < off) dcls[k] += s;
  }
}

template <typename T>
__global__ void positions_backward_emb_kernel(T* demb, const T* dx, int B, int Tin, int C,
                                              int off) {
  const size_t n = static_cast<size_t>(B) * Tin * C;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t k = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += stride) {
    const int c = static_cast<int>(k % C);
    const size_t bt = k / C;
    const int t = static_cast<int>(bt % Tin), b = static_cast<int>(bt / Tin);
    const size_t src = (static_cast<size_t>(b) * (Tin + off) + t + off) * C + c;
    demb[k] = from_f<T>(to_f(demb[k]) + to_f(dx[src]));
  }
}

}  // namespace

template <typename T>
void positions_forward_cuda(T* x, const T* emb, const T* cls, const T* wpe, int B, int Tin, int C,
                            CudaStream stream) {
  DPT_CHECK(B >= 0 && Tin > 0 && C > 0, "positions_forward_cuda: bad shape");
  if (B == 0) return;
  DPT_CHECK(x && emb && wpe, "positions_forward_cuda: null pointer");
  const int off = cls ? 1 : 0;
  const size_t n = static_cast<size_t>(B) * (Tin + off) * C;
  positions_forward_kernel<T><<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(
      x, emb, cls, wpe, B, Tin, C, off);
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void positions_backward_cuda(T* demb, float* dcls, float* dwpe, const T* dx, int B, int Tin, int C,
                             CudaStream stream) {
  DPT_CHECK(B >= 0 && Tin > 0 && C > 0, "positions_backward_cuda: bad shape");
  if (B == 0) return;
  DPT_CHECK(dwpe && dx, "positions_backward_cuda: null pointer");
  const int off = dcls ? 1 : 0;
  const size_t np = static_cast<size_t>(Tin + off) * C;
  positions_backward_params_kernel<T>
      <<<grid_stride_blocks(np, kThreads, kMaxBlocks), kThreads, 0, stream>>>(dcls, dwpe, dx, B,
                                                                              Tin, C, off);
  DPT_CHECK_LAUNCH(stream);
  if (!demb) return;
  const size_t ne = static_cast<size_t>(B) * Tin * C;
  positions_backward_emb_kernel<T>
      <<<grid_stride_blocks(ne, kThreads, kMaxBlocks), kThreads, 0, stream>>>(demb, dx, B, Tin, C,
                                                                              off);
  DPT_CHECK_LAUNCH(stream);
}

template void positions_forward_cuda<float>(float*, const float*, const float*, const float*, int,
                                            int, int, CudaStream);
template void positions_forward_cuda<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*,
                                                    const __nv_bfloat16*, const __nv_bfloat16*, int,
                                                    int, int, CudaStream);
template void positions_backward_cuda<float>(float*, float*, float*, const float*, int, int, int,
                                             CudaStream);
template void positions_backward_cuda<__nv_bfloat16>(__nv_bfloat16*, float*, float*,
                                                     const __nv_bfloat16*, int, int, int,
                                                     CudaStream);

}  // namespace dpt::kernels
