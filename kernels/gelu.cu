// GELU (tanh approximation, as GPT-2) on the GPU, elementwise, in fp32 whatever the storage
// type, with the sigmoid form of the CPU reference (kernels/gelu_cpu.cpp).
#include <cuda_bf16.h>

#include <string>

#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/gelu.h"
#include "kernels/gelu_math.cuh"

namespace dpt::kernels {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 4096;  // grid-stride loops cover the rest

using namespace cuda_detail;

// gelu() and gelu_grad(): gelu_math.cuh.

// Packs of VEC elements first; the last n % VEC elements one by one.
template <typename T, int VEC>
__global__ void gelu_forward_kernel(T* out, const T* inp, size_t n) {
  using P = Pack<T, VEC>;
  const size_t packs = n / VEC;
  const size_t first = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t k = first; k < packs; k += stride) {
    const P x = reinterpret_cast<const P*>(inp)[k];
    P o;
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      o.v[j] = from_f<T>(gelu(to_f(x.v[j])));
    reinterpret_cast<P*>(out)[k] = o;
  }
  for (size_t i = packs * VEC + first; i < n; i += stride)
    out[i] = from_f<T>(gelu(to_f(inp[i])));
}

// dinp[i] += gelu'(inp[i]) dout[i]; each element is read and written by one thread.
template <typename T, int VEC>
__global__ void gelu_backward_kernel(T* dinp, const T* inp, const T* dout, size_t n, bool add) {
  using P = Pack<T, VEC>;
  const size_t packs = n / VEC;
  const size_t first = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t k = first; k < packs; k += stride) {
    const P x = reinterpret_cast<const P*>(inp)[k];
    const P g = reinterpret_cast<const P*>(dout)[k];
    P d{};
    if (add) d = reinterpret_cast<const P*>(dinp)[k];  // write mode reads nothing
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      d.v[j] = from_f<T>((add ? to_f(d.v[j]) : 0.0f) + gelu_grad(to_f(x.v[j])) * to_f(g.v[j]));
    }
    reinterpret_cast<P*>(dinp)[k] = d;
  }
  for (size_t i = packs * VEC + first; i < n; i += stride) {
    dinp[i] = from_f<T>((add ? to_f(dinp[i]) : 0.0f) + gelu_grad(to_f(inp[i])) * to_f(dout[i]));
  }
}

}  // namespace

template <typename T>
void gelu_forward_cuda(T* out, const T* inp, size_t n, CudaStream stream) {
  if (n == 0) return;
  DPT_CHECK(out && inp, "gelu_forward_cuda: null pointer");
  constexpr int kVec = 16 / sizeof(T);
  if (aligned16(out) && aligned16(inp)) {
    gelu_forward_kernel<T, kVec>
        <<<grid_stride_blocks(n / kVec, kThreads, kMaxBlocks), kThreads, 0, stream>>>(out, inp, n);
  } else {
    gelu_forward_kernel<T, 1>
        <<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(out, inp, n);
  }
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void gelu_backward_cuda(T* dinp, const T* inp, const T* dout, size_t n, CudaStream stream,
                        GradInput mode) {
  const bool add = mode == GradInput::add;
  if (n == 0) return;
  DPT_CHECK(dinp && inp && dout, "gelu_backward_cuda: null pointer");
  constexpr int kVec = 16 / sizeof(T);
  if (aligned16(dinp) && aligned16(inp) && aligned16(dout)) {
    gelu_backward_kernel<T, kVec>
        <<<grid_stride_blocks(n / kVec, kThreads, kMaxBlocks), kThreads, 0, stream>>>(dinp, inp,
                                                                                      dout, n, add);
  } else {
    gelu_backward_kernel<T, 1>
        <<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(dinp, inp, dout, n,
                                                                               add);
  }
  DPT_CHECK_LAUNCH(stream);
}

template void gelu_forward_cuda<float>(float*, const float*, size_t, CudaStream);
template void gelu_forward_cuda<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*, size_t,
                                               CudaStream);
template void gelu_backward_cuda<float>(float*, const float*, const float*, size_t, CudaStream,
                                        GradInput);
template void gelu_backward_cuda<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*,
                                                const __nv_bfloat16*, size_t, CudaStream,
                                                GradInput);

}  // namespace dpt::kernels
