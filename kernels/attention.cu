// Multi-head self-attention on the GPU, unfused: q, k, v copied to per-head order, the scores
// and weighted sums as batched products over the B*NH heads, a masked softmax kernel
// ([Attention mask]); the layout and softmax kernels move 16-byte packs where the shapes allow
// ([Attention packs]).
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

// [Attention packs] The layout kernels and the softmax kernels move VEC elements of T per load
// and store, 16 bytes (VEC = 16 / sizeof(T)), where the shapes and pointers allow it: the
// layout kernels when the head size hs is a multiple of VEC (a pack then never straddles two
// heads, nor q, k and v), the softmax kernels when the row length T is (every row then starts
// on a pack), and in both cases every pointer 16-byte aligned. Otherwise VEC = 1, the scalar
// kernels (odd head sizes, odd T). Both give the same bits: the layout kernels copy or add
// element by element, and the softmax kernels keep each element's arithmetic and the order of
// their sums ([Softmax sum order]).

// qkv [B,T,3C] -> q, k, v [B,NH,T,hs]; one thread per pack of q (and the same of k and v).
template <typename T, int VEC>
__global__ void permute_qkv_kernel(T* q, T* k, T* v, const T* qkv, int B, int Tn, int C, int NH) {
  using P = Pack<T, VEC>;
  const int hsp = C / NH / VEC;  // packs per head row
  const size_t total = static_cast<size_t>(B) * Tn * (C / VEC);
  const size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  // idx = ((b * NH + h) * T + t) * hsp + dp
  const int dp = static_cast<int>(idx % hsp);
  size_t rest = idx / hsp;
  const int t = static_cast<int>(rest % Tn);
  rest /= Tn;
  const int h = static_cast<int>(rest % NH);
  const size_t b = rest / NH;
  const T* src =
      qkv + (b * Tn + t) * 3 * static_cast<size_t>(C) + (static_cast<size_t>(h) * hsp + dp) * VEC;
  reinterpret_cast<P*>(q)[idx] = load_pack<T, VEC>(src);
  reinterpret_cast<P*>(k)[idx] = load_pack<T, VEC>(src + C);
  reinterpret_cast<P*>(v)[idx] = load_pack<T, VEC>(src + 2 * static_cast<size_t>(C));
}

// [B,NH,T,hs] <-> [B,T,C] (head h at channels [h*hs, (h+1)*hs)). to_heads = true reads [B,T,C]
// and writes [B,NH,T,hs]; false the reverse. One thread per pack, indexed in the written
// layout so that the writes are coalesced.
template <typename T, bool to_heads, int VEC>
__global__ void heads_layout_kernel(T* dst, const T* src, int B, int Tn, int C, int NH) {
  using P = Pack<T, VEC>;
  const int cp_row = C / VEC;   // packs per [B,T,C] row
  const int hsp = cp_row / NH;  // packs per head row
  const size_t total = static_cast<size_t>(B) * Tn * cp_row;
  const size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  size_t heads_idx, btc_idx;  // in packs
  if constexpr (to_heads) {   // idx = ((b * NH + h) * T + t) * hsp + dp
    const int dp = static_cast<int>(idx % hsp);
    size_t rest = idx / hsp;
    const int t = static_cast<int>(rest % Tn);
    rest /= Tn;
    const int h = static_cast<int>(rest % NH);
    const size_t b = rest / NH;
    heads_idx = idx;
    btc_idx = (b * Tn + t) * cp_row + static_cast<size_t>(h) * hsp + dp;
  } else {  // idx = (b * T + t) * cp_row + h * hsp + dp
    const int cp = static_cast<int>(idx % cp_row);
    const size_t bt = idx / cp_row;
    const int t = static_cast<int>(bt % Tn);
    const size_t b = bt / Tn;
    const int h = cp / hsp, dp = cp % hsp;
    btc_idx = idx;
    heads_idx = ((b * NH + h) * Tn + t) * hsp + dp;
  }
  if constexpr (to_heads)
    reinterpret_cast<P*>(dst)[heads_idx] = reinterpret_cast<const P*>(src)[btc_idx];
  else
    reinterpret_cast<P*>(dst)[btc_idx] = reinterpret_cast<const P*>(src)[heads_idx];
}

// dqkv [B,T,3C] += (dq | dk | dv) [B,NH,T,hs], in fp32, rounded once to T; one thread per pack
// of dqkv.
template <typename T, int VEC>
__global__ void add_qkv_grad_kernel(T* dqkv, const T* dq, const T* dk, const T* dv, int B, int Tn,
                                    int C, int NH) {
  using P = Pack<T, VEC>;
  const int cp_row = C / VEC;   // packs per C channels
  const int hsp = cp_row / NH;  // packs per head row
  const size_t total = static_cast<size_t>(B) * Tn * 3 * cp_row;
  const size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int r = static_cast<int>(idx % (3 * static_cast<size_t>(cp_row)));
  const size_t bt = idx / (3 * static_cast<size_t>(cp_row));
  const int t = static_cast<int>(bt % Tn);
  const size_t b = bt / Tn;
  const int part = r / cp_row, cp = r % cp_row;
  const int h = cp / hsp, dp = cp % hsp;
  const T* g = part == 0 ? dq : (part == 1 ? dk : dv);
  const size_t heads_idx = ((b * NH + h) * Tn + t) * hsp + dp;
  const P x = reinterpret_cast<const P*>(g)[heads_idx];
  P d = reinterpret_cast<const P*>(dqkv)[idx];
#pragma unroll
  for (int j = 0; j < VEC; ++j)
    d.v[j] = from_f<T>(to_f(d.v[j]) + to_f(x.v[j]));
  reinterpret_cast<P*>(dqkv)[idx] = d;
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

// [Softmax sum order] A row's sums (the softmax denominator, the backward's dot product) are
// taken as the scalar kernels take them: lane l adds the visible keys l, l + 32, l + 64, ... in
// increasing order, then warp_sum combines the lanes. With packs, lane l loads packs l, l + 32,
// ..., so its own keys are elsewhere: the warp moves a tile of 32 packs (32 * VEC keys) through
// shared memory, where lane l reads keys l, l + 32, ..., l + 32 (VEC - 1) of the tile, the
// scalar kernel's next VEC keys for that lane, in the same order. The maximum needs no such
// care: fmaxf is exact, so any partition gives the same value (a -0 / +0 tie changes nothing
// downstream: x - m and exp are the same for either).
template <typename T, int VEC>
struct WarpTile {
  alignas(16) T keys[kWarp * VEC];
  // Lane `lane` stores the pack it loaded: keys [lane * VEC, (lane + 1) * VEC) of the tile.
  __device__ __forceinline__ void put(int lane, const Pack<T, VEC>& x) {
    store_pack<T, VEC>(keys + lane * VEC, x);
  }
  // Key lane + 32 j of the tile.
  __device__ __forceinline__ float key(int lane, int j) const {
    return to_f(keys[lane + j * kWarp]);
  }
};

// In place on att [B*NH*T rows, T]: the scaled scores of a row become softmax over the keys it
// sees (fp32, max subtracted); the other columns become exact zeros. One warp a row; VEC keys a
// load ([Attention packs]): T is a multiple of VEC and att 16-byte aligned when VEC > 1.
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads)
    masked_softmax_kernel(T* att, size_t rows, int Tn, int NH, bool causal, const int32_t* len) {
  using P = Pack<T, VEC>;
  const size_t row = blockIdx.x * static_cast<size_t>(kThreads / kWarp) + threadIdx.x / kWarp;
  if (row >= rows) return;  // whole warps leave together: the shuffles below see full warps
  const int lane = threadIdx.x % kWarp;
  const int seen = row_visible(row, Tn, NH, causal, len);
  const int packs = Tn / VEC;
  const int seen_packs = (seen + VEC - 1) / VEC;  // packs holding a visible key
  P* p = reinterpret_cast<P*>(att + row * Tn);
  float m = -INFINITY;
  for (int k = lane; k < seen_packs; k += kWarp) {
    const P x = p[k];
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      if (k * VEC + j < seen) m = fmaxf(m, to_f(x.v[j]));
  }
  m = warp_max(m);
  float sum = 0.0f;  // [Softmax sum order]
  if constexpr (VEC == 1) {
    for (int s = lane; s < seen; s += kWarp)
      sum += expf(to_f(p[s].v[0]) - m);
  } else {
    __shared__ WarpTile<T, VEC> tiles[kThreads / kWarp];
    WarpTile<T, VEC>& tile = tiles[threadIdx.x / kWarp];
    for (int s0 = 0; s0 < seen; s0 += kWarp * VEC) {
      const int k = s0 / VEC + lane;
      if (k < seen_packs) tile.put(lane, p[k]);
      __syncwarp();
#pragma unroll
      for (int j = 0; j < VEC; ++j)
        if (s0 + lane + j * kWarp < seen) sum += expf(tile.key(lane, j) - m);
      __syncwarp();  // the tile is read before the next one overwrites it
    }
  }
  const float inv = 1.0f / warp_sum(sum);  // >= 1 term equal to exp(0) = 1: never 0
  for (int k = lane; k < packs; k += kWarp) {
    P o;
    if (k < seen_packs) {
      const P x = p[k];
#pragma unroll
      for (int j = 0; j < VEC; ++j)
        o.v[j] = k * VEC + j < seen ? from_f<T>(expf(to_f(x.v[j]) - m) * inv) : from_f<T>(0.0f);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; ++j)
        o.v[j] = from_f<T>(0.0f);
    }
    p[k] = o;
  }
}

// In place on datt: dpreatt[t,s] = scale * att[t,s] (datt[t,s] - sum_s' att[t,s'] datt[t,s'])
// over the keys the row sees (the softmax backward times the score scale), exact zeros elsewhere.
// VEC as in masked_softmax_kernel, for datt and att both.
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads)
    masked_softmax_backward_kernel(T* datt, const T* att, size_t rows, int Tn, float scale, int NH,
                                   bool causal, const int32_t* len) {
  using P = Pack<T, VEC>;
  const size_t row = blockIdx.x * static_cast<size_t>(kThreads / kWarp) + threadIdx.x / kWarp;
  if (row >= rows) return;
  const int lane = threadIdx.x % kWarp;
  const int seen = row_visible(row, Tn, NH, causal, len);
  const int packs = Tn / VEC;
  const int seen_packs = (seen + VEC - 1) / VEC;
  P* g = reinterpret_cast<P*>(datt + row * Tn);
  const P* p = reinterpret_cast<const P*>(att + row * Tn);
  float dot = 0.0f;  // [Softmax sum order]
  if constexpr (VEC == 1) {
    for (int s = lane; s < seen; s += kWarp)
      dot += to_f(p[s].v[0]) * to_f(g[s].v[0]);
  } else {
    __shared__ WarpTile<T, VEC> p_tiles[kThreads / kWarp], g_tiles[kThreads / kWarp];
    WarpTile<T, VEC>& p_tile = p_tiles[threadIdx.x / kWarp];
    WarpTile<T, VEC>& g_tile = g_tiles[threadIdx.x / kWarp];
    for (int s0 = 0; s0 < seen; s0 += kWarp * VEC) {
      const int k = s0 / VEC + lane;
      if (k < seen_packs) {
        p_tile.put(lane, p[k]);
        g_tile.put(lane, g[k]);
      }
      __syncwarp();
#pragma unroll
      for (int j = 0; j < VEC; ++j)
        if (s0 + lane + j * kWarp < seen) dot += p_tile.key(lane, j) * g_tile.key(lane, j);
      __syncwarp();
    }
  }
  dot = warp_sum(dot);
  for (int k = lane; k < packs; k += kWarp) {
    P o;
    if (k < seen_packs) {
      const P x = p[k];
      const P y = g[k];
#pragma unroll
      for (int j = 0; j < VEC; ++j)
        o.v[j] = k * VEC + j < seen ? from_f<T>(scale * to_f(x.v[j]) * (to_f(y.v[j]) - dot))
                                    : from_f<T>(0.0f);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; ++j)
        o.v[j] = from_f<T>(0.0f);
    }
    g[k] = o;
  }
}

unsigned blocks_for(size_t n, size_t per_block) {
  return static_cast<unsigned>((n + per_block - 1) / per_block);
}

// Launchers of the kernels above, each picking the 16-byte packs where [Attention packs]
// allows them.
template <typename T>
constexpr int kVec = 16 / sizeof(T);

template <typename T>
void permute_qkv(T* q, T* k, T* v, const T* qkv, int B, int Tn, int C, int NH, CudaStream stream) {
  const size_t btc = static_cast<size_t>(B) * Tn * C;
  if ((C / NH) % kVec<T> == 0 && aligned16(q) && aligned16(k) && aligned16(v) && aligned16(qkv)) {
    permute_qkv_kernel<T, kVec<T>>
        <<<blocks_for(btc / kVec<T>, kThreads), kThreads, 0, stream>>>(q, k, v, qkv, B, Tn, C, NH);
  } else {
    permute_qkv_kernel<T, 1>
        <<<blocks_for(btc, kThreads), kThreads, 0, stream>>>(q, k, v, qkv, B, Tn, C, NH);
  }
  DPT_CHECK_LAUNCH(stream);
}

template <typename T, bool to_heads>
void heads_layout(T* dst, const T* src, int B, int Tn, int C, int NH, CudaStream stream) {
  const size_t btc = static_cast<size_t>(B) * Tn * C;
  if ((C / NH) % kVec<T> == 0 && aligned16(dst) && aligned16(src)) {
    heads_layout_kernel<T, to_heads, kVec<T>>
        <<<blocks_for(btc / kVec<T>, kThreads), kThreads, 0, stream>>>(dst, src, B, Tn, C, NH);
  } else {
    heads_layout_kernel<T, to_heads, 1>
        <<<blocks_for(btc, kThreads), kThreads, 0, stream>>>(dst, src, B, Tn, C, NH);
  }
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void add_qkv_grad(T* dqkv, const T* dq, const T* dk, const T* dv, int B, int Tn, int C, int NH,
                  CudaStream stream) {
  const size_t total = 3 * static_cast<size_t>(B) * Tn * C;
  if ((C / NH) % kVec<T> == 0 && aligned16(dqkv) && aligned16(dq) && aligned16(dk) &&
      aligned16(dv)) {
    add_qkv_grad_kernel<T, kVec<T>><<<blocks_for(total / kVec<T>, kThreads), kThreads, 0, stream>>>(
        dqkv, dq, dk, dv, B, Tn, C, NH);
  } else {
    add_qkv_grad_kernel<T, 1>
        <<<blocks_for(total, kThreads), kThreads, 0, stream>>>(dqkv, dq, dk, dv, B, Tn, C, NH);
  }
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void masked_softmax(T* att, size_t rows, int Tn, int NH, const AttentionMask& mask,
                    CudaStream stream) {
  const unsigned blocks = blocks_for(rows, kThreads / kWarp);
  if (Tn % kVec<T> == 0 && aligned16(att)) {
    masked_softmax_kernel<T, kVec<T>>
        <<<blocks, kThreads, 0, stream>>>(att, rows, Tn, NH, mask.causal, mask.lengths);
  } else {
    masked_softmax_kernel<T, 1>
        <<<blocks, kThreads, 0, stream>>>(att, rows, Tn, NH, mask.causal, mask.lengths);
  }
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void masked_softmax_backward(T* datt, const T* att, size_t rows, int Tn, float scale, int NH,
                             const AttentionMask& mask, CudaStream stream) {
  const unsigned blocks = blocks_for(rows, kThreads / kWarp);
  if (Tn % kVec<T> == 0 && aligned16(datt) && aligned16(att)) {
    masked_softmax_backward_kernel<T, kVec<T>><<<blocks, kThreads, 0, stream>>>(
        datt, att, rows, Tn, scale, NH, mask.causal, mask.lengths);
  } else {
    masked_softmax_backward_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(
        datt, att, rows, Tn, scale, NH, mask.causal, mask.lengths);
  }
  DPT_CHECK_LAUNCH(stream);
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

  permute_qkv<T>(q, k, v, qkv, B, Tn, C, NH, stream);
  // scores = scale q k^T, written into att: the full T x T square per head (the softmax masks).
  gemm.gemm_batched<T>(false, true, Tn, Tn, hs, scale, q, hs, head_stride, k, hs, head_stride, 0.0f,
                       att, Tn, att_stride, heads, stream);
  const size_t rows = static_cast<size_t>(heads) * Tn;
  masked_softmax<T>(att, rows, Tn, NH, mask, stream);
  // y = att v; the exact zeros leave hidden keys (the future, padding) out exactly.
  gemm.gemm_batched<T>(false, false, Tn, hs, Tn, 1.0f, att, Tn, att_stride, v, hs, head_stride,
                       0.0f, y, hs, head_stride, heads, stream);
  heads_layout<T, false>(out, y, B, Tn, C, NH, stream);
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

  permute_qkv<T>(q, k, v, qkv, B, Tn, C, NH, stream);
  heads_layout<T, true>(dy, dout, B, Tn, C, NH, stream);
  // datt = dy v^T;  dv = att^T dy
  gemm.gemm_batched<T>(false, true, Tn, Tn, hs, 1.0f, dy, hs, head_stride, v, hs, head_stride, 0.0f,
                       datt, Tn, att_stride, heads, stream);
  gemm.gemm_batched<T>(true, false, Tn, hs, Tn, 1.0f, att, Tn, att_stride, dy, hs, head_stride,
                       0.0f, dv, hs, head_stride, heads, stream);
  const size_t rows = static_cast<size_t>(heads) * Tn;
  masked_softmax_backward<T>(datt, att, rows, Tn, scale, NH, mask, stream);
  // scores = scale q k^T, the scale already in dpreatt:  dq = dpreatt k;  dk = dpreatt^T q
  gemm.gemm_batched<T>(false, false, Tn, hs, Tn, 1.0f, datt, Tn, att_stride, k, hs, head_stride,
                       0.0f, dq, hs, head_stride, heads, stream);
  gemm.gemm_batched<T>(true, false, Tn, hs, Tn, 1.0f, datt, Tn, att_stride, q, hs, head_stride,
                       0.0f, dk, hs, head_stride, heads, stream);
  add_qkv_grad<T>(dqkv, dq, dk, dv, B, Tn, C, NH, stream);
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
