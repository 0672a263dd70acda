// Residual connection on the GPU: out = a + b forward; backward the gradient passes to both
// inputs. Elementwise, fp32 arithmetic whatever the storage type.
#include <cuda_bf16.h>

#include <string>

#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/residual.h"

namespace dpt::kernels {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 4096;  // grid-stride loops cover the rest

using namespace cuda_detail;

// Packs of VEC elements first; the last n % VEC elements one by one.
template <typename T, int VEC>
__global__ void residual_forward_kernel(T* out, const T* a, const T* b, size_t n) {
  using P = Pack<T, VEC>;
  const size_t packs = n / VEC;
  const size_t first = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t k = first; k < packs; k += stride) {
    const P x = reinterpret_cast<const P*>(a)[k];
    const P y = reinterpret_cast<const P*>(b)[k];
    P o;
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      o.v[j] = from_f<T>(to_f(x.v[j]) + to_f(y.v[j]));
    reinterpret_cast<P*>(out)[k] = o;
  }
  for (size_t i = packs * VEC + first; i < n; i += stride) {
    out[i] = from_f<T>(to_f(a[i]) + to_f(b[i]));
  }
}

// da += dout, then db += dout. Pointers are deliberately not __restrict__ and each element is
// handled by one thread in this order, so the result matches the CPU reference even when da or
// db is the dout buffer itself (dout is read before anything is written).
template <typename T, int VEC>
__global__ void residual_backward_kernel(T* da, T* db, const T* dout, size_t n) {
  using P = Pack<T, VEC>;
  const size_t packs = n / VEC;
  const size_t first = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t k = first; k < packs; k += stride) {
    const P g = reinterpret_cast<const P*>(dout)[k];
    P x = reinterpret_cast<const P*>(da)[k];
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      x.v[j] = from_f<T>(to_f(x.v[j]) + to_f(g.v[j]));
    reinterpret_cast<P*>(da)[k] = x;
    P y = reinterpret_cast<const P*>(db)[k];
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      y.v[j] = from_f<T>(to_f(y.v[j]) + to_f(g.v[j]));
    reinterpret_cast<P*>(db)[k] = y;
  }
  for (size_t i = packs * VEC + first; i < n; i += stride) {
    const float g = to_f(dout[i]);
    da[i] = from_f<T>(to_f(da[i]) + g);
    db[i] = from_f<T>(to_f(db[i]) + g);
  }
}

}  // namespace

template <typename T>
void residual_forward_cuda(T* out, const T* a, const T* b, size_t n, CudaStream stream) {
  if (n == 0) return;
  DPT_CHECK(out && a && b, "residual_forward_cuda: null pointer");
  constexpr int kVec = 16 / sizeof(T);
  if (aligned16(out) && aligned16(a) && aligned16(b)) {
    residual_forward_kernel<T, kVec>
        <<<grid_stride_blocks(n / kVec, kThreads, kMaxBlocks), kThreads, 0, stream>>>(out, a, b, n);
  } else {
    residual_forward_kernel<T, 1>
        <<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(out, a, b, n);
  }
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void residual_backward_cuda(T* da, T* db, const T* dout, size_t n, CudaStream stream) {
  if (n == 0) return;
  DPT_CHECK(da && db && dout, "residual_backward_cuda: null pointer");
  constexpr int kVec = 16 / sizeof(T);
  if (aligned16(da) && aligned16(db) && aligned16(dout)) {
    residual_backward_kernel<T, kVec>
        <<<grid_stride_blocks(n / kVec, kThreads, kMaxBlocks), kThreads, 0, stream>>>(da, db, dout,
                                                                                      n);
  } else {
    residual_backward_kernel<T, 1>
        <<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(da, db, dout, n);
  }
  DPT_CHECK_LAUNCH(stream);
}

template void residual_forward_cuda<float>(float*, const float*, const float*, size_t, CudaStream);
template void residual_forward_cuda<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*,
                                                   const __nv_bfloat16*, size_t, CudaStream);
template void residual_backward_cuda<float>(float*, float*, const float*, size_t, CudaStream);
template void residual_backward_cuda<__nv_bfloat16>(__nv_bfloat16*, __nv_bfloat16*,
                                                    const __nv_bfloat16*, size_t, CudaStream);

}  // namespace dpt::kernels
