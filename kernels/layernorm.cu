// Layer normalization on the GPU: one warp per row forward (alone or fused with the residual add
// before it) and for the input gradient; the weight / bias gradients as fixed row-slice partial
// sums reduced in slice order (deterministic).
#include <cuda_bf16.h>

#include <string>

#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/layernorm.h"

namespace dpt::kernels {
namespace {

constexpr int kRowThreads = 256;  // 8 warps, one row each
constexpr int kRowsPerBlock = kRowThreads / 32;
constexpr float kEps = static_cast<float>(kLayerNormEps);

// dweight / dbias are summed over row slices ([LayerNorm slices] in layernorm.h); the scratch
// holds 2 * C floats per slice (weight, then bias).
constexpr int kSliceColThreads = 256;
constexpr int kReduceWarps = 8;

using namespace cuda_detail;

// [Residual LayerNorm] The pieces of a forward row that layernorm_forward_kernel and
// residual_layernorm_forward_kernel share: one warp per row, lane l handles packs l, l + 32, ...
// of VEC channels (C % VEC == 0), and the sums run in that order. Both kernels reach the
// statistics and the outputs through this code alone, so that the fused kernel gives the bits
// of the plain one run on its res_out. Statistics in two passes over the row (it stays in L1):
// one-pass E[x^2] - E[x]^2 cancels.

// Adds a pack's elements to this lane's running sum, in element order.
template <typename T, int VEC>
__device__ __forceinline__ float add_pack(float sum, const Pack<T, VEC>& p) {
#pragma unroll
  for (int j = 0; j < VEC; ++j)
    sum += to_f(p.v[j]);
  return sum;
}

// 1 / sqrt(var + eps) of row x with mean m, over the whole warp.
template <typename T, int VEC>
__device__ __forceinline__ float row_rstd(const T* x, float m, int C, int lane) {
  float sq = 0.0f;
  for (int k = lane; k < C / VEC; k += 32) {
    const Pack<T, VEC> p = load_pack<T, VEC>(x + k * VEC);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float d = to_f(p.v[j]) - m;
      sq += d * d;
    }
  }
  return 1.0f / sqrtf(warp_sum(sq) / C + kEps);
}

// o = (x - m) * s * weight + bias, this lane's packs.
template <typename T, int VEC>
__device__ __forceinline__ void normalize_row(T* o, const T* x, const T* weight, const T* bias,
                                              float m, float s, int C, int lane) {
  for (int k = lane; k < C / VEC; k += 32) {
    const Pack<T, VEC> p = load_pack<T, VEC>(x + k * VEC);
    const Pack<T, VEC> w = load_pack<T, VEC>(weight + k * VEC);
    const Pack<T, VEC> b = load_pack<T, VEC>(bias + k * VEC);
    Pack<T, VEC> r;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      r.v[j] = from_f<T>((to_f(p.v[j]) - m) * s * to_f(w.v[j]) + to_f(b.v[j]));
    }
    store_pack<T, VEC>(o + k * VEC, r);
  }
}

// VEC consecutive elements of a or b: one 16-byte load when PACKED, else VEC single loads (a
// or b off the 16-byte grid while the row itself is laid out in packs).
template <typename T, int VEC, bool PACKED>
__device__ __forceinline__ Pack<T, VEC> load_input(const T* p) {
  if constexpr (PACKED) {
    return load_pack<T, VEC>(p);
  } else {
    Pack<T, VEC> r;
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      r.v[j] = p[j];
    return r;
  }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kRowThreads)
    layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* inp, const T* weight,
                             const T* bias, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;  // whole warps leave together: the shuffles below stay full-warp
  const T* x = inp + static_cast<size_t>(row) * C;
  float sum = 0.0f;
  for (int k = lane; k < C / VEC; k += 32)
    sum = add_pack<T, VEC>(sum, load_pack<T, VEC>(x + k * VEC));
  const float m = warp_sum(sum) / C;
  const float s = row_rstd<T, VEC>(x, m, C, lane);
  normalize_row<T, VEC>(out + static_cast<size_t>(row) * C, x, weight, bias, m, s, C, lane);
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// [Residual LayerNorm] The first pass adds a + b, rounds to T as residual_forward_kernel does,
// stores res_out and sums the rounded values; the other two passes read the row back from
// res_out. Each lane reads back only the packs it stored itself (the same lane -> pack map in
// every pass), so program order makes them visible without a barrier. No pointer aliases
// another (the declaration's contract): __restrict__ lets the loads of a and b run ahead of the
// stores to res_out.
template <typename T, int VEC, bool PACKED_INPUTS>
__global__ void __launch_bounds__(kRowThreads)
    residual_layernorm_forward_kernel(T* __restrict__ res_out, T* __restrict__ ln_out,
                                      float* __restrict__ mean, float* __restrict__ rstd,
                                      const T* __restrict__ a, const T* __restrict__ b,
                                      const T* __restrict__ weight, const T* __restrict__ bias,
                                      int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;  // whole warps leave together: the shuffles below stay full-warp
  const size_t base = static_cast<size_t>(row) * C;
  T* x = res_out + base;
  float sum = 0.0f;
  for (int k = lane; k < C / VEC; k += 32) {
    const Pack<T, VEC> pa = load_input<T, VEC, PACKED_INPUTS>(a + base + k * VEC);
    const Pack<T, VEC> pb = load_input<T, VEC, PACKED_INPUTS>(b + base + k * VEC);
    Pack<T, VEC> r;
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      r.v[j] = from_f<T>(to_f(pa.v[j]) + to_f(pb.v[j]));
    store_pack<T, VEC>(x + k * VEC, r);
    sum = add_pack<T, VEC>(sum, r);
  }
  const float m = warp_sum(sum) / C;
  const float s = row_rstd<T, VEC>(x, m, C, lane);
  normalize_row<T, VEC>(ln_out + base, x, weight, bias, m, s, C, lane);
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// dinp, one warp per row: with xhat = (x - mean) rstd and g = dout * weight,
// dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)), added into dinp.
template <typename T, int VEC>
__global__ void __launch_bounds__(kRowThreads)
    layernorm_backward_dinp_kernel(T* dinp, const T* dout, const T* inp, const T* weight,
                                   const float* mean, const float* rstd, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const size_t base = static_cast<size_t>(row) * C;
  const float m = mean[row];
  const float s = rstd[row];
  const int packs = C / VEC;

  float sum_g = 0.0f, sum_gx = 0.0f;
  for (int k = lane; k < packs; k += 32) {
    const Pack<T, VEC> x = load_pack<T, VEC>(inp + base + k * VEC);
    const Pack<T, VEC> dy = load_pack<T, VEC>(dout + base + k * VEC);
    const Pack<T, VEC> w = load_pack<T, VEC>(weight + k * VEC);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float g = to_f(dy.v[j]) * to_f(w.v[j]);
      sum_g += g;
      sum_gx += g * ((to_f(x.v[j]) - m) * s);
    }
  }
  const float mean_g = warp_sum(sum_g) / C;
  const float mean_gx = warp_sum(sum_gx) / C;

  for (int k = lane; k < packs; k += 32) {
    const Pack<T, VEC> x = load_pack<T, VEC>(inp + base + k * VEC);
    const Pack<T, VEC> dy = load_pack<T, VEC>(dout + base + k * VEC);
    const Pack<T, VEC> w = load_pack<T, VEC>(weight + k * VEC);
    Pack<T, VEC> dx = load_pack<T, VEC>(dinp + base + k * VEC);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float g = to_f(dy.v[j]) * to_f(w.v[j]);
      const float xhat = (to_f(x.v[j]) - m) * s;
      dx.v[j] = from_f<T>(to_f(dx.v[j]) + s * (g - mean_g - xhat * mean_gx));
    }
    store_pack<T, VEC>(dinp + base + k * VEC, dx);
  }
}

// Block (x, slice): channels x * blockDim.x + threadIdx.x, rows of one slice in order.
// scratch[slice][0][c] = sum dy xhat, scratch[slice][1][c] = sum dy.
template <typename T>
__global__ void __launch_bounds__(kSliceColThreads)
    layernorm_backward_slice_kernel(float* scratch, const T* dout, const T* inp, const float* mean,
                                    const float* rstd, int N, int C, int rows_per_slice) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int slice = blockIdx.y;
  const int r0 = slice * rows_per_slice;
  const int r1 = min(N, r0 + rows_per_slice);
  float acc_w = 0.0f, acc_b = 0.0f;
  for (int r = r0; r < r1; ++r) {
    const size_t i = static_cast<size_t>(r) * C + c;
    const float dy = to_f(dout[i]);
    acc_w += dy * ((to_f(inp[i]) - mean[r]) * rstd[r]);
    acc_b += dy;
  }
  float* dst = scratch + static_cast<size_t>(slice) * 2 * C;
  dst[c] = acc_w;
  dst[C + c] = acc_b;
}

// Block of 32 channels x kReduceWarps warps: warp y sums slices y, y + kReduceWarps, ... in
// order, then warp 0 combines the warps' sums in warp order and ADDS into dweight / dbias.
__global__ void __launch_bounds__(32 * kReduceWarps)
    layernorm_backward_reduce_kernel(float* dweight, float* dbias, const float* scratch, int slices,
                                     int C) {
  __shared__ float part_w[kReduceWarps][32];
  __shared__ float part_b[kReduceWarps][32];
  const int lane = threadIdx.x;
  const int wy = threadIdx.y;
  const int c = blockIdx.x * 32 + lane;
  float acc_w = 0.0f, acc_b = 0.0f;
  if (c < C) {
    for (int sl = wy; sl < slices; sl += kReduceWarps) {
      const float* src = scratch + static_cast<size_t>(sl) * 2 * C;
      acc_w += src[c];
      acc_b += src[C + c];
    }
  }
  part_w[wy][lane] = acc_w;
  part_b[wy][lane] = acc_b;
  __syncthreads();
  if (wy == 0 && c < C) {
    float tw = 0.0f, tb = 0.0f;
#pragma unroll
    for (int k = 0; k < kReduceWarps; ++k) {
      tw += part_w[k][lane];
      tb += part_b[k][lane];
    }
    dweight[c] += tw;
    dbias[c] += tb;
  }
}

void check_shape(const char* fn, int N, int C) {
  DPT_CHECK(N > 0 && C > 0, std::string(fn) + ": sizes must be positive, N=" + std::to_string(N) +
                                ", C=" + std::to_string(C));
}

// [Residual LayerNorm] Whether a forward row is laid out in 16-byte packs: the one rule both
// forward launchers apply, to the LayerNorm's output, input (res_out when fused), weight, bias.
template <typename T>
bool rows_in_packs(int C, const T* out, const T* inp, const T* weight, const T* bias) {
  constexpr int kVec = 16 / sizeof(T);
  return C % kVec == 0 && aligned16(out) && aligned16(inp) && aligned16(weight) && aligned16(bias);
}

}  // namespace

template <typename T>
void layernorm_forward_cuda(T* out, float* mean, float* rstd, const T* inp, const T* weight,
                            const T* bias, int N, int C, CudaStream stream) {
  check_shape(__func__, N, C);
  DPT_CHECK(out && mean && rstd && inp && weight && bias, "layernorm_forward_cuda: null pointer");
  constexpr int kVec = 16 / sizeof(T);
  const unsigned grid = static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock);
  if (rows_in_packs(C, out, inp, weight, bias)) {
    layernorm_forward_kernel<T, kVec>
        <<<grid, kRowThreads, 0, stream>>>(out, mean, rstd, inp, weight, bias, N, C);
  } else {
    layernorm_forward_kernel<T, 1>
        <<<grid, kRowThreads, 0, stream>>>(out, mean, rstd, inp, weight, bias, N, C);
  }
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void residual_layernorm_forward_cuda(T* res_out, T* ln_out, float* mean, float* rstd, const T* a,
                                     const T* b, const T* weight, const T* bias, int N, int C,
                                     CudaStream stream) {
  check_shape(__func__, N, C);
  DPT_CHECK(res_out && ln_out && mean && rstd && a && b && weight && bias,
            "residual_layernorm_forward_cuda: null pointer");
  DPT_CHECK(res_out != ln_out, "residual_layernorm_forward_cuda: res_out and ln_out must differ");
  constexpr int kVec = 16 / sizeof(T);
  const unsigned grid = static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock);
  // The layout layernorm_forward_cuda would take on res_out; a and b fit into it.
  if (rows_in_packs(C, ln_out, res_out, weight, bias)) {
    if (aligned16(a) && aligned16(b)) {
      residual_layernorm_forward_kernel<T, kVec, true>
          <<<grid, kRowThreads, 0, stream>>>(res_out, ln_out, mean, rstd, a, b, weight, bias, N, C);
    } else {
      residual_layernorm_forward_kernel<T, kVec, false>
          <<<grid, kRowThreads, 0, stream>>>(res_out, ln_out, mean, rstd, a, b, weight, bias, N, C);
    }
  } else {
    residual_layernorm_forward_kernel<T, 1, true>
        <<<grid, kRowThreads, 0, stream>>>(res_out, ln_out, mean, rstd, a, b, weight, bias, N, C);
  }
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void layernorm_backward_cuda(T* dinp, float* dweight, float* dbias, const T* dout, const T* inp,
                             const T* weight, const float* mean, const float* rstd, float* scratch,
                             int N, int C, CudaStream stream) {
  check_shape(__func__, N, C);
  DPT_CHECK(dinp && dweight && dbias && dout && inp && weight && mean && rstd && scratch,
            "layernorm_backward_cuda: null pointer");
  constexpr int kVec = 16 / sizeof(T);
  const unsigned row_grid = static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock);
  if (C % kVec == 0 && aligned16(dinp) && aligned16(dout) && aligned16(inp) && aligned16(weight)) {
    layernorm_backward_dinp_kernel<T, kVec>
        <<<row_grid, kRowThreads, 0, stream>>>(dinp, dout, inp, weight, mean, rstd, N, C);
  } else {
    layernorm_backward_dinp_kernel<T, 1>
        <<<row_grid, kRowThreads, 0, stream>>>(dinp, dout, inp, weight, mean, rstd, N, C);
  }
  DPT_CHECK_LAUNCH(stream);

  const LayerNormSlices part = layernorm_backward_slices(N);
  const int rows = part.rows, slices = part.count;
  const dim3 slice_grid(static_cast<unsigned>((C + kSliceColThreads - 1) / kSliceColThreads),
                        static_cast<unsigned>(slices));
  layernorm_backward_slice_kernel<T>
      <<<slice_grid, kSliceColThreads, 0, stream>>>(scratch, dout, inp, mean, rstd, N, C, rows);
  DPT_CHECK_LAUNCH(stream);
  const dim3 reduce_block(32, kReduceWarps);
  layernorm_backward_reduce_kernel<<<static_cast<unsigned>((C + 31) / 32), reduce_block, 0,
                                     stream>>>(dweight, dbias, scratch, slices, C);
  DPT_CHECK_LAUNCH(stream);
}

template void layernorm_forward_cuda<float>(float*, float*, float*, const float*, const float*,
                                            const float*, int, int, CudaStream);
template void layernorm_forward_cuda<__nv_bfloat16>(__nv_bfloat16*, float*, float*,
                                                    const __nv_bfloat16*, const __nv_bfloat16*,
                                                    const __nv_bfloat16*, int, int, CudaStream);
template void residual_layernorm_forward_cuda<float>(float*, float*, float*, float*, const float*,
                                                     const float*, const float*, const float*, int,
                                                     int, CudaStream);
template void residual_layernorm_forward_cuda<__nv_bfloat16>(
    __nv_bfloat16*, __nv_bfloat16*, float*, float*, const __nv_bfloat16*, const __nv_bfloat16*,
    const __nv_bfloat16*, const __nv_bfloat16*, int, int, CudaStream);
template void layernorm_backward_cuda<float>(float*, float*, float*, const float*, const float*,
                                             const float*, const float*, const float*, float*, int,
                                             int, CudaStream);
template void layernorm_backward_cuda<__nv_bfloat16>(__nv_bfloat16*, float*, float*,
                                                     const __nv_bfloat16*, const __nv_bfloat16*,
                                                     const __nv_bfloat16*, const float*,
                                                     const float*, float*, int, int, CudaStream);

}  // namespace dpt::kernels
