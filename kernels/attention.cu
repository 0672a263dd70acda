// Multi-head self-attention on the GPU, unfused: q, k, v copied to per-head order, the scores
// and weighted sums as batched products over the B*NH heads, a masked softmax kernel
// ([Attention mask]).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "common/errors.h"
#include "kernels/attention.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"

namespace dpt::kernels {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 256;
constexpr int kWarp = 32;

using namespace cuda_detail;

// Butterfly max over a full warp (warp_sum's order): every lane ends with the same bits.
__device__ __forceinline__ float warp_max(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// qkv [B,T,3C] -> q, k, v [B,NH,T,hs]; one thread per element of q (and the same of k and v).
template <typename T>
__global__ void permute_qkv_kernel(T* q, T* k, T* v, const T* qkv, int B, int Tn, int C, int NH) {
  const int hs = C / NH;
  const size_t total = static_cast<size_t>(B) * Tn * C;
  const size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  // idx = ((b * NH + h) * T + t) * hs + d
  const int d = static_cast<int>(idx % hs);
  size_t rest = idx / hs;
  const int t = static_cast<int>(rest % Tn);
  rest /= Tn;
  const int h = static_cast<int>(rest % NH);
  const size_t b = rest / NH;
  const size_t src = (b * Tn + t) * 3 * static_cast<size_t>(C) + static_cast<size_t>(h) * hs + d;
  q[idx] = qkv[src];
  k[idx] = qkv[src + C];
  v[idx] = qkv[src + 2 * static_cast<size_t>(C)];
}

// [B,NH,T,hs] <-> [B,T,C] (head h at channels [h*hs, (h+1)*hs)). to_heads = true reads [B,T,C]
// and writes [B,NH,T,hs]; false the reverse. One thread per element, indexed in the written
// layout so that the writes are coalesced.
template <typename T, bool to_heads>
__global__ void heads_layout_kernel(T* dst, const T* src, int B, int Tn, int C, int NH) {
  const int hs = C / NH;
  const size_t total = static_cast<size_t>(B) * Tn * C;
  const size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  size_t heads_idx, btc_idx;
  if constexpr (to_heads) {  // idx = ((b * NH + h) * T + t) * hs + d
    const int d = static_cast<int>(idx % hs);
    size_t rest = idx / hs;
    const int t = static_cast<int>(rest % Tn);
    rest /= Tn;
    const int h = static_cast<int>(rest % NH);
    const size_t b = rest / NH;
    heads_idx = idx;
    btc_idx = (b * Tn + t) * C + static_cast<size_t>(h) * hs + d;
  } else {  // idx = (b * T + t) * C + h * hs + d
    const int c = static_cast<int>(idx % C);
    const size_t bt = idx / C;
    const int t = static_cast<int>(bt % Tn);
    const size_t b = bt / Tn;
    const int h = c / hs, d = c % hs;
    btc_idx = idx;
    heads_idx = ((b * NH + h) * Tn + t) * hs + d;
  }
  if constexpr (to_heads)
    dst[heads_idx] = src[btc_idx];
  else
    dst[btc_idx] = src[heads_idx];
}

// dqkv [B,T,3C] += (dq | dk | dv) [B,NH,T,hs], in fp32, rounded once to T.
template <typename T>
__global__ void add_qkv_grad_kernel(T* dqkv, const T* dq, const T* dk, const T* dv, int B, int Tn,
                                    int C, int NH) {
  const int hs = C / NH;
  const size_t total = static_cast<size_t>(B) * Tn * 3 * C;
  const size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int r = static_cast<int>(idx % (3 * static_cast<size_t>(C)));
  const size_t bt = idx / (3 * static_cast<size_t>(C));
  const int t = static_cast<int>(bt % Tn);
  const size_t b = bt / Tn;
  const int part = r / C, c = r % C;
  const int h = c / hs, d = c % hs;
  const T* g = part == 0 ? dq : (part == 1 ? dk : dv);
  const size_t heads_idx = ((b * NH + h) * Tn + t) * hs + d;
  dqkv[idx] = from_f<T>(to_f(dqkv[idx]) + to_f(g[heads_idx]));
}

// The keys row `row` of att [B*NH*T rows, T] sees ([Attention mask]); lengths are clamped to
// [1, T] (the host checks them where it builds them).
__device__ __forceinline__ int row_visible(size_t row, int Tn, int NH, bool causal,
                                           const int32_t* len) {
  const int t = static_cast<int>(row % Tn);
  const int b = static_cast<int>(row / (static_cast<size_t>(Tn) * NH));
  const int L = len ? min(max(len[b], 1), Tn) : Tn;
  return causal ? min(t + 1, L) : L;
}

// In place on att [B*NH*T rows, T]: the scaled scores of a row become softmax over the keys it
// sees (fp32, max subtracted); the other columns become exact zeros. One warp a row.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    masked_softmax_kernel(T* att, size_t rows, int Tn, int NH, bool causal, const int32_t* len) {
  const size_t row = blockIdx.x * static_cast<size_t>(kThreads / kWarp) + threadIdx.x / kWarp;
  if (row >= rows) return;  // whole warps leave together: the shuffles below see full warps
  const int lane = threadIdx.x % kWarp;
  const int seen = row_visible(row, Tn, NH, causal, len);
  T* p = att + row * Tn;
  float m = -INFINITY;
  for (int s = lane; s < seen; s += kWarp)
    m = fmaxf(m, to_f(p[s]));
  m = warp_max(m);
  float sum = 0.0f;
  for (int s = lane; s < seen; s += kWarp)
    sum += expf(to_f(p[s]) - m);
  const float inv = 1.0f / warp_sum(sum);  // >= 1 term equal to exp(0) = 1: never 0
  for (int s = lane; s < Tn; s += kWarp)
    p[s] = s < seen ? from_f<T>(expf(to_f(p[s]) - m) * inv) : from_f<T>(0.0f);
}

// In place on datt: dpreatt[t,s] = scale * att[t,s] (datt[t,s] - sum_s' att[t,s'] datt[t,s'])
// over the keys the row sees (the softmax backward times the score scale), exact zeros elsewhere.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    masked_softmax_backward_kernel(T* datt, const T* att, size_t rows, int Tn, float scale, int NH,
                                   bool causal, const int32_t* len) {
  const size_t row = blockIdx.x * static_cast<size_t>(kThreads / kWarp) + threadIdx.x / kWarp;
  if (row >= rows) return;
  const int lane = threadIdx.x % kWarp;
  const int seen = row_visible(row, Tn, NH, causal, len);
  T* g = datt + row * Tn;
  const T* p = att + row * Tn;
  float dot = 0.0f;
  for (int s = lane; s < seen; s += kWarp)
    dot += to_f(p[s]) * to_f(g[s]);
  dot = warp_sum(dot);
  for (int s = lane; s < Tn; s += kWarp)
    g[s] = s < seen ? from_f<T>(scale * to_f(p[s]) * (to_f(g[s]) - dot)) : from_f<T>(0.0f);
}

unsigned blocks_for(size_t n, size_t per_block) {
  return static_cast<unsigned>((n + per_block - 1) / per_block);
}

void check_sizes(int B, int Tn, int C, int NH) {
  DPT_CHECK(B > 0 && Tn > 0 && C > 0 && NH > 0 && C % NH == 0,
            "attention: bad sizes B=" + std::to_string(B) + " T=" + std::to_string(Tn) +
                " C=" + std::to_string(C) + " NH=" + std::to_string(NH) +
                " (C must split into NH equal heads)");
}

// [Attention scratch]
// One T-typed buffer of attention_cuda_scratch_elems elements, carved as (BTC = B*T*C, each
// [B,NH,T,hs] slot holding BTC elements; BHTT = B*NH*T*T):
//   [0 BTC, 3 BTC)  q, k, v in per-head order            (forward and backward)
//   [3 BTC, 4 BTC)  forward: y = att v;  backward: dy (dout in per-head order)
//   [4 BTC, 7 BTC)  backward: dq, dk, dv
//   [7 BTC, 7 BTC + BHTT)  backward: datt, turned into dpreatt in place
// The forward writes the scores straight into att (its output) and applies the softmax there,
// so it needs no T x T scratch. The backward copies q, k, v again from qkv: between the passes
// other layers use the same scratch.
struct Carve {
  size_t btc;
  template <typename T>
  T* slot(T* scratch, int i) const {
    return scratch + static_cast<size_t>(i) * btc;
  }
};

}  // namespace

size_t attention_cuda_scratch_elems(int B, int Tn, int C, int NH) {
  check_sizes(B, Tn, C, NH);
  const size_t btc = static_cast<size_t>(B) * Tn * C;
  return 7 * btc + static_cast<size_t>(B) * NH * Tn * Tn;
}

template <typename T>
void attention_forward_cuda(T* out, T* att, const T* qkv, T* scratch, int B, int Tn, int C, int NH,
                            GemmCuda& gemm, CudaStream stream, const AttentionMask& mask) {
  check_sizes(B, Tn, C, NH);
  const int hs = C / NH;
  const int heads = B * NH;
  const Carve carve{static_cast<size_t>(B) * Tn * C};
  T* q = carve.slot(scratch, 0);
  T* k = carve.slot(scratch, 1);
  T* v = carve.slot(scratch, 2);
  T* y = carve.slot(scratch, 3);
  const long long head_stride = static_cast<long long>(Tn) * hs;  // one head of q, k, v, y
  const long long att_stride = static_cast<long long>(Tn) * Tn;   // one head of att
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));

  permute_qkv_kernel<T>
      <<<blocks_for(carve.btc, kThreads), kThreads, 0, stream>>>(q, k, v, qkv, B, Tn, C, NH);
  DPT_CHECK_LAUNCH(stream);
  // scores = scale q k^T, written into att: the full T x T square per head (the softmax masks).
  gemm.gemm_batched<T>(false, true, Tn, Tn, hs, scale, q, hs, head_stride, k, hs, head_stride, 0.0f,
                       att, Tn, att_stride, heads, stream);
  const size_t rows = static_cast<size_t>(heads) * Tn;
  masked_softmax_kernel<T><<<blocks_for(rows, kThreads / kWarp), kThreads, 0, stream>>>(
      att, rows, Tn, NH, mask.causal, mask.lengths);
  DPT_CHECK_LAUNCH(stream);
  // y = att v; the exact zeros leave hidden keys (the future, padding) out exactly.
  gemm.gemm_batched<T>(false, false, Tn, hs, Tn, 1.0f, att, Tn, att_stride, v, hs, head_stride,
                       0.0f, y, hs, head_stride, heads, stream);
  heads_layout_kernel<T, false>
      <<<blocks_for(carve.btc, kThreads), kThreads, 0, stream>>>(out, y, B, Tn, C, NH);
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void attention_backward_cuda(T* dqkv, T* scratch, const T* dout, const T* qkv, const T* att, int B,
                             int Tn, int C, int NH, GemmCuda& gemm, CudaStream stream,
                             const AttentionMask& mask) {
  check_sizes(B, Tn, C, NH);
  const int hs = C / NH;
  const int heads = B * NH;
  const Carve carve{static_cast<size_t>(B) * Tn * C};
  T* q = carve.slot(scratch, 0);
  T* k = carve.slot(scratch, 1);
  T* v = carve.slot(scratch, 2);
  T* dy = carve.slot(scratch, 3);
  T* dq = carve.slot(scratch, 4);
  T* dk = carve.slot(scratch, 5);
  T* dv = carve.slot(scratch, 6);
  T* datt = carve.slot(scratch, 7);
  const long long head_stride = static_cast<long long>(Tn) * hs;
  const long long att_stride = static_cast<long long>(Tn) * Tn;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));

  permute_qkv_kernel<T>
      <<<blocks_for(carve.btc, kThreads), kThreads, 0, stream>>>(q, k, v, qkv, B, Tn, C, NH);
  DPT_CHECK_LAUNCH(stream);
  heads_layout_kernel<T, true>
      <<<blocks_for(carve.btc, kThreads), kThreads, 0, stream>>>(dy, dout, B, Tn, C, NH);
  DPT_CHECK_LAUNCH(stream);
  // datt = dy v^T;  dv = att^T dy
  gemm.gemm_batched<T>(false, true, Tn, Tn, hs, 1.0f, dy, hs, head_stride, v, hs, head_stride, 0.0f,
                       datt, Tn, att_stride, heads, stream);
  gemm.gemm_batched<T>(true, false, Tn, hs, Tn, 1.0f, att, Tn, att_stride, dy, hs, head_stride,
                       0.0f, dv, hs, head_stride, heads, stream);
  const size_t rows = static_cast<size_t>(heads) * Tn;
  masked_softmax_backward_kernel<T><<<blocks_for(rows, kThreads / kWarp), kThreads, 0, stream>>>(
      datt, att, rows, Tn, scale, NH, mask.causal, mask.lengths);
  DPT_CHECK_LAUNCH(stream);
  // scores = scale q k^T, the scale already in dpreatt:  dq = dpreatt k;  dk = dpreatt^T q
  gemm.gemm_batched<T>(false, false, Tn, hs, Tn, 1.0f, datt, Tn, att_stride, k, hs, head_stride,
                       0.0f, dq, hs, head_stride, heads, stream);
  gemm.gemm_batched<T>(true, false, Tn, hs, Tn, 1.0f, datt, Tn, att_stride, q, hs, head_stride,
                       0.0f, dk, hs, head_stride, heads, stream);
  const size_t total = 3 * carve.btc;
  add_qkv_grad_kernel<T>
      <<<blocks_for(total, kThreads), kThreads, 0, stream>>>(dqkv, dq, dk, dv, B, Tn, C, NH);
  DPT_CHECK_LAUNCH(stream);
}

namespace {

// [Attention decode] on the GPU: one block per head. Threads share the keys for the scores,
// the block agrees on their maximum and sum (fixed-order reductions), and then share the head's
// channels for the weighted sum over the keys in s order; probs live in shared memory.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    attention_decode_kernel(T* out, float* probs, const T* q, const T* k_cache, const T* v_cache,
                            int n, int C, int NH, float scale) {
  extern __shared__ float p[];  // n scores, then probabilities
  __shared__ float agreed;
  const int h = blockIdx.x, hs = C / NH;
  const T* qh = q + static_cast<size_t>(h) * hs;
  float m = -INFINITY;
  for (int s = threadIdx.x; s < n; s += blockDim.x) {
    const T* kk = k_cache + static_cast<size_t>(s) * C + static_cast<size_t>(h) * hs;
    float dot = 0.0f;
    for (int i = 0; i < hs; ++i)
      dot += to_f(qh[i]) * to_f(kk[i]);
    p[s] = dot * scale;
    m = fmaxf(m, p[s]);
  }
  // Block maximum: each warp's, then warp 0's over them.
  __shared__ float warp_max_part[kThreads / kWarp];
  m = warp_max(m);
  if (threadIdx.x % kWarp == 0) warp_max_part[threadIdx.x / kWarp] = m;
  __syncthreads();
  if (threadIdx.x < kWarp) {
    float v = threadIdx.x < blockDim.x / kWarp ? warp_max_part[threadIdx.x] : -INFINITY;
    v = warp_max(v);
    if (threadIdx.x == 0) agreed = v;
  }
  __syncthreads();
  const float max = agreed;
  float sum = 0.0f;
  for (int s = threadIdx.x; s < n; s += blockDim.x) {
    p[s] = expf(p[s] - max);
    sum += p[s];
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) agreed = sum;
  __syncthreads();
  const float inv = 1.0f / agreed;
  for (int s = threadIdx.x; s < n; s += blockDim.x) {
    p[s] *= inv;
    if (probs) probs[static_cast<size_t>(h) * n + s] = p[s];
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hs; d += blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s < n; ++s)
      acc += p[s] * to_f(v_cache[static_cast<size_t>(s) * C + static_cast<size_t>(h) * hs + d]);
    out[static_cast<size_t>(h) * hs + d] = from_f<T>(acc);
  }
}

}  // namespace

template <typename T>
void attention_decode_cuda(T* out, float* probs, const T* q, const T* k_cache, const T* v_cache,
                           int n_keys, int C, int NH, CudaStream stream) {
  DPT_CHECK(NH > 0 && C % NH == 0 && n_keys >= 1, "attention_decode_cuda: bad shape");
  DPT_CHECK(out && q && k_cache && v_cache, "attention_decode_cuda: null pointer");
  const size_t shared = static_cast<size_t>(n_keys) * sizeof(float);
  DPT_CHECK(shared <= 48 * 1024, "attention_decode_cuda: " + std::to_string(n_keys) +
                                     " keys need more shared memory than 48 KiB");
  const float scale = 1.0f / std::sqrt(static_cast<float>(C / NH));
  attention_decode_kernel<T>
      <<<NH, kThreads, shared, stream>>>(out, probs, q, k_cache, v_cache, n_keys, C, NH, scale);
  DPT_CHECK_LAUNCH(stream);
}

template void attention_decode_cuda<float>(float*, float*, const float*, const float*, const float*,
                                           int, int, int, CudaStream);
template void attention_decode_cuda<bf16>(bf16*, float*, const bf16*, const bf16*, const bf16*, int,
                                          int, int, CudaStream);

template void attention_forward_cuda<float>(float*, float*, const float*, float*, int, int, int,
                                            int, GemmCuda&, CudaStream, const AttentionMask&);
template void attention_forward_cuda<bf16>(bf16*, bf16*, const bf16*, bf16*, int, int, int, int,
                                           GemmCuda&, CudaStream, const AttentionMask&);
template void attention_backward_cuda<float>(float*, float*, const float*, const float*,
                                             const float*, int, int, int, int, GemmCuda&,
                                             CudaStream, const AttentionMask&);
template void attention_backward_cuda<bf16>(bf16*, bf16*, const bf16*, const bf16*, const bf16*,
                                            int, int, int, int, GemmCuda&, CudaStream,
                                            const AttentionMask&);

}  // namespace dpt::kernels
