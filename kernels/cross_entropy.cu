// Fused softmax + cross-entropy on the GPU: forward keeps only the row's logsumexp, backward
// writes the logit gradient (in place over the logits if asked), and the loss sum is reduced on
// the device in a fixed order.
#include <cuda_bf16.h>

#include <cstdint>
#include <string>

#include "kernels/cross_entropy.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"

namespace dpt::kernels {
namespace {

constexpr int kRowThreads = 512;   // one block per row of V logits
constexpr int kSumThreads = 1024;  // the single block of loss_sum_accumulate_cuda

using namespace cuda_detail;

// A running softmax denominator: sum = sum_i exp(x_i - max). A thread that saw no element (or
// only -inf) has max = -inf and sum = 0. Rescaling uses ref = max, or 0 while max is -inf, so
// that -inf - -inf never appears: an empty side then contributes sum * exp(-inf) = 0. A NaN
// logit makes sum NaN (fmaxf keeps it out of max, expf carries it into sum, and NaN * 0 stays
// NaN), so the loss is NaN and the [Non-finite guard] sees it; an Inf logit gives a NaN too.
struct MaxSum {
  float max;
  float sum;
};
__device__ __forceinline__ float rescale_ref(float m) {
  return m == -INFINITY ? 0.0f : m;
}
__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  const float ref = rescale_ref(m);
  return {m, a.sum * expf(a.max - ref) + b.sum * expf(b.max - ref)};
}

// Butterfly merge over the warp, then warp 0 merges the warps' results in warp order: the
// combination order is fixed by the block size, so every run gives the same bits. The result is
// valid in every thread of the block on return.
__device__ MaxSum block_merge(MaxSum x) {
  __shared__ MaxSum warp_part[32];
  __shared__ MaxSum total;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const MaxSum y = {__shfl_xor_sync(0xffffffffu, x.max, o),
                      __shfl_xor_sync(0xffffffffu, x.sum, o)};
    x = merge(x, y);
  }
  if (lane == 0) warp_part[warp] = x;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / 32;
    MaxSum y = lane < warps ? warp_part[lane] : MaxSum{-INFINITY, 0.0f};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const MaxSum z = {__shfl_xor_sync(0xffffffffu, y.max, o),
                        __shfl_xor_sync(0xffffffffu, y.sum, o)};
      y = merge(y, z);
    }
    if (lane == 0) total = y;
  }
  __syncthreads();
  return total;
}

// Packs of VEC elements that cover a row of V: with VEC > 1 the row stride ld is a multiple of
// VEC and at least packs * VEC ([Padded vocabulary]), so the last pack reads padding, masked.
template <int VEC>
__device__ __forceinline__ int row_packs(int V) {
  return (V + VEC - 1) / VEC;
}

// One block per row. Each thread folds its packs into a running (max, sum), one rescale per
// pack rather than per element (x[] is unrolled into registers); columns >= V count as -inf.
template <typename T, int VEC>
__global__ void __launch_bounds__(kRowThreads)
    cross_entropy_forward_kernel(float* losses, float* lse, const T* logits, const int32_t* targets,
                                 int V, int ld) {
  using P = Pack<T, VEC>;
  const int row = blockIdx.x;
  const T* z = logits + static_cast<size_t>(row) * ld;
  const int packs = row_packs<VEC>(V);
  MaxSum acc = {-INFINITY, 0.0f};
  for (int k = threadIdx.x; k < packs; k += blockDim.x) {
    const P p = reinterpret_cast<const P*>(z)[k];
    float x[VEC];
    float pm = -INFINITY;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      x[j] = k * VEC + j < V ? to_f(p.v[j]) : -INFINITY;
      pm = fmaxf(pm, x[j]);
    }
    const float m = fmaxf(acc.max, pm);
    const float ref = rescale_ref(m);
    float s = acc.sum * expf(acc.max - ref);
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      s += expf(x[j] - ref);
    acc = {m, s};
  }
  const MaxSum r = block_merge(acc);
  if (threadIdx.x == 0) {
    const float l = r.max + logf(r.sum);
    const int32_t t = targets[row];
    lse[row] = l;
    // The caller checked the targets on the host; an id that got here anyway gives a NaN loss
    // (and so a skipped step) rather than a read outside the row.
    losses[row] = (t >= 0 && t < V) ? l - to_f(z[t]) : NAN;
  }
}

// dlogits[n, v] = dloss (exp(logits[n, v] - lse[n]) - [v == target]), WRITTEN, and 0 in the
// padding of the last pack. Each element is read and then written by the same thread, so
// dlogits may be logits itself (no __restrict__).
template <typename T, int VEC>
__global__ void __launch_bounds__(kRowThreads)
    cross_entropy_backward_kernel(T* dlogits, const T* logits, const float* lse,
                                  const int32_t* targets, float dloss, int V, int ld) {
  using P = Pack<T, VEC>;
  const int row = blockIdx.x;
  const size_t base = static_cast<size_t>(row) * ld;
  const float l = lse[row];
  const int32_t t = targets[row];
  const int packs = row_packs<VEC>(V);
  for (int k = threadIdx.x; k < packs; k += blockDim.x) {
    const P p = reinterpret_cast<const P*>(logits + base)[k];
    P d;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const int v = k * VEC + j;
      const float indicator = v == t ? 1.0f : 0.0f;
      d.v[j] = from_f<T>(v < V ? dloss * (expf(to_f(p.v[j]) - l) - indicator) : 0.0f);
    }
    reinterpret_cast<P*>(dlogits + base)[k] = d;
  }
}

// One block: thread i sums losses i, i + blockDim, ... in order, then the block sums in a fixed
// tree; thread 0 adds the total.
__global__ void __launch_bounds__(kSumThreads)
    loss_sum_kernel(float* sum, const float* losses, int n) {
  float acc = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    acc += losses[i];
  const float total = block_sum(acc);
  if (threadIdx.x == 0) *sum += total;
}

void check_shape(const char* fn, int N, int V, int ld) {
  DPT_CHECK(N > 0 && V > 0, std::string(fn) + ": sizes must be positive, N=" + std::to_string(N) +
                                ", V=" + std::to_string(V));
  DPT_CHECK(ld >= V, std::string(fn) + ": rows " + std::to_string(ld) +
                         " apart hold fewer than V=" + std::to_string(V) +
                         " logits ([Padded vocabulary] needs ld >= V)");
}

// Whole 16-byte packs fit every row: ld a multiple of the pack and covering V's last pack.
template <typename T>
bool packs_fit(int V, int ld) {
  constexpr int kVec = 16 / sizeof(T);
  return ld % kVec == 0 && ld >= (V + kVec - 1) / kVec * kVec;
}

}  // namespace

template <typename T>
void softmax_cross_entropy_forward_cuda(float* losses, float* lse, const T* logits,
                                        const int32_t* targets, int N, int V, int ld,
                                        CudaStream stream) {
  check_shape(__func__, N, V, ld);
  DPT_CHECK(losses && lse && logits && targets, "softmax_cross_entropy_forward_cuda: null pointer");
  constexpr int kVec = 16 / sizeof(T);
  if (packs_fit<T>(V, ld) && aligned16(logits)) {
    cross_entropy_forward_kernel<T, kVec>
        <<<static_cast<unsigned>(N), kRowThreads, 0, stream>>>(losses, lse, logits, targets, V, ld);
  } else {
    cross_entropy_forward_kernel<T, 1>
        <<<static_cast<unsigned>(N), kRowThreads, 0, stream>>>(losses, lse, logits, targets, V, ld);
  }
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void softmax_cross_entropy_backward_cuda(T* dlogits, const T* logits, const float* lse,
                                         const int32_t* targets, float dloss, int N, int V, int ld,
                                         CudaStream stream) {
  check_shape(__func__, N, V, ld);
  DPT_CHECK(dlogits && logits && lse && targets,
            "softmax_cross_entropy_backward_cuda: null pointer");
  constexpr int kVec = 16 / sizeof(T);
  if (packs_fit<T>(V, ld) && aligned16(dlogits) && aligned16(logits)) {
    cross_entropy_backward_kernel<T, kVec><<<static_cast<unsigned>(N), kRowThreads, 0, stream>>>(
        dlogits, logits, lse, targets, dloss, V, ld);
  } else {
    cross_entropy_backward_kernel<T, 1><<<static_cast<unsigned>(N), kRowThreads, 0, stream>>>(
        dlogits, logits, lse, targets, dloss, V, ld);
  }
  DPT_CHECK_LAUNCH(stream);
}

void loss_sum_accumulate_cuda(float* sum, const float* losses, int n, CudaStream stream) {
  DPT_CHECK(n >= 0, "loss_sum_accumulate_cuda: n=" + std::to_string(n));
  DPT_CHECK(sum && (losses || n == 0), "loss_sum_accumulate_cuda: null pointer");
  if (n == 0) return;
  loss_sum_kernel<<<1, kSumThreads, 0, stream>>>(sum, losses, n);
  DPT_CHECK_LAUNCH(stream);
}

template void softmax_cross_entropy_forward_cuda<float>(float*, float*, const float*,
                                                        const int32_t*, int, int, int, CudaStream);
template void softmax_cross_entropy_forward_cuda<__nv_bfloat16>(float*, float*,
                                                                const __nv_bfloat16*,
                                                                const int32_t*, int, int, int,
                                                                CudaStream);
template void softmax_cross_entropy_backward_cuda<float>(float*, const float*, const float*,
                                                         const int32_t*, float, int, int, int,
                                                         CudaStream);
template void softmax_cross_entropy_backward_cuda<__nv_bfloat16>(__nv_bfloat16*,
                                                                 const __nv_bfloat16*, const float*,
                                                                 const int32_t*, float, int, int,
                                                                 int, CudaStream);

}  // namespace dpt::kernels
