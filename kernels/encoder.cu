// Token + position embedding on the GPU: the lookup forward, and backward the scatter into the
// tables through [Embedding buckets] (kernels/encoder.h), deterministic without atomics.
#include <cuda_bf16.h>

#include <cstdint>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/encoder.h"

namespace dpt::kernels {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 4096;  // grid-stride loops cover the rest

using namespace cuda_detail;

// One thread per pack of VEC channels of one output row; C is a multiple of VEC.
template <typename T, int VEC>
__global__ void encoder_forward_kernel(T* out, const int32_t* tokens, const T* wte, const T* wpe,
                                       size_t rows, int Tn, int C) {
  using P = Pack<T, VEC>;
  const size_t packs_per_row = static_cast<size_t>(C / VEC);
  const size_t total = rows * packs_per_row;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t k = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += stride) {
    const size_t row = k / packs_per_row;
    const size_t c = (k % packs_per_row) * VEC;
    const size_t t = row % static_cast<size_t>(Tn);
    const P te = *reinterpret_cast<const P*>(wte + static_cast<size_t>(tokens[row]) * C + c);
    const P pe = *reinterpret_cast<const P*>(wpe + t * C + c);
    P o;
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      o.v[j] = from_f<T>(to_f(te.v[j]) + to_f(pe.v[j]));
    *reinterpret_cast<P*>(out + row * C + c) = o;
  }
}

// Block (j, y) owns bucket j's token row, channels y*blockDim.x + threadIdx.x: it sums the
// bucket's positions in the order encoder_buckets left them (position order), then adds the sum
// once. No other block touches that row, so no atomics are needed and the bits are fixed.
template <typename T>
__global__ void encoder_backward_wte_kernel(float* dwte, const T* dout, const int32_t* order,
                                            const int32_t* bucket_start,
                                            const int32_t* bucket_token, int C) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int j = blockIdx.x;
  const int begin = bucket_start[j];
  const int end = bucket_start[j + 1];
  float acc = 0.0f;
#pragma unroll 4
  for (int q = begin; q < end; ++q) {
    acc += to_f(dout[static_cast<size_t>(order[q]) * C + c]);
  }
  float* dst = dwte + static_cast<size_t>(bucket_token[j]) * C + c;
  *dst += acc;
}

// One thread per (t, c) of dwpe, summing the batch in order b = 0..B-1.
template <typename T>
__global__ void encoder_backward_wpe_kernel(float* dwpe, const T* dout, int B, int Tn, int C) {
  const size_t total = static_cast<size_t>(Tn) * C;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t k = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += stride) {
    float acc = 0.0f;
    for (int b = 0; b < B; ++b)
      acc += to_f(dout[static_cast<size_t>(b) * total + k]);
    dwpe[k] += acc;
  }
}

std::string shape(int B, int Tn, int C) {
  return "B=" + std::to_string(B) + ", T=" + std::to_string(Tn) + ", C=" + std::to_string(C);
}

}  // namespace

template <typename T>
void encoder_forward_cuda(T* out, const int32_t* tokens, const T* wte, const T* wpe, int B, int Tn,
                          int C, CudaStream stream) {
  DPT_CHECK(B > 0 && Tn > 0 && C > 0,
            "encoder_forward_cuda: sizes must be positive, " + shape(B, Tn, C));
  DPT_CHECK(out && tokens && wte && wpe, "encoder_forward_cuda: null pointer");
  const size_t rows = static_cast<size_t>(B) * Tn;
  constexpr int kVec = 16 / sizeof(T);
  if (C % kVec == 0 && aligned16(out) && aligned16(wte) && aligned16(wpe)) {
    encoder_forward_kernel<T, kVec>
        <<<grid_stride_blocks(rows * (C / kVec), kThreads, kMaxBlocks), kThreads, 0, stream>>>(
            out, tokens, wte, wpe, rows, Tn, C);
  } else {
    encoder_forward_kernel<T, 1>
        <<<grid_stride_blocks(rows * C, kThreads, kMaxBlocks), kThreads, 0, stream>>>(
            out, tokens, wte, wpe, rows, Tn, C);
  }
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void encoder_backward_cuda(float* dwte, float* dwpe, const T* dout, const int32_t* order,
                           const int32_t* bucket_start, const int32_t* bucket_token, int n_buckets,
                           int B, int Tn, int C, CudaStream stream) {
  DPT_CHECK(B > 0 && Tn > 0 && C > 0,
            "encoder_backward_cuda: sizes must be positive, " + shape(B, Tn, C));
  const int64_t positions = static_cast<int64_t>(B) * Tn;
  DPT_CHECK(n_buckets >= 1 && n_buckets <= positions,
            "encoder_backward_cuda: " + std::to_string(n_buckets) + " buckets for " +
                std::to_string(positions) + " positions");
  DPT_CHECK(positions <= INT32_MAX, "encoder_backward_cuda: too many positions for int32 ids");
  DPT_CHECK(dwte && dwpe && dout && order && bucket_start && bucket_token,
            "encoder_backward_cuda: null pointer");
  const dim3 grid(static_cast<unsigned>(n_buckets),
                  static_cast<unsigned>((C + kThreads - 1) / kThreads));
  DPT_CHECK(grid.y <= 65535u, "encoder_backward_cuda: C=" + std::to_string(C) + " too large");
  encoder_backward_wte_kernel<T>
      <<<grid, kThreads, 0, stream>>>(dwte, dout, order, bucket_start, bucket_token, C);
  DPT_CHECK_LAUNCH(stream);
  encoder_backward_wpe_kernel<T>
      <<<grid_stride_blocks(static_cast<size_t>(Tn) * C, kThreads, kMaxBlocks), kThreads, 0,
         stream>>>(dwpe, dout, B, Tn, C);
  DPT_CHECK_LAUNCH(stream);
}

template void encoder_forward_cuda<float>(float*, const int32_t*, const float*, const float*, int,
                                          int, int, CudaStream);
template void encoder_forward_cuda<__nv_bfloat16>(__nv_bfloat16*, const int32_t*,
                                                  const __nv_bfloat16*, const __nv_bfloat16*, int,
                                                  int, int, CudaStream);
template void encoder_backward_cuda<float>(float*, float*, const float*, const int32_t*,
                                           const int32_t*, const int32_t*, int, int, int, int,
                                           CudaStream);
template void encoder_backward_cuda<__nv_bfloat16>(float*, float*, const __nv_bfloat16*,
                                                   const int32_t*, const int32_t*, const int32_t*,
                                                   int, int, int, int, CudaStream);

}  // namespace dpt::kernels
