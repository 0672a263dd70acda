// [Tiled attention] on the GPU ([Fused attention] below): FlashAttention-2 forward and backward
// kernels reading q, k, v straight from qkv, tensor cores (wmma) for bf16, fp32 FMA for float.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "common/errors.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/flash_attention.h"

namespace dpt::kernels {
namespace {

using bf16 = __nv_bfloat16;
using namespace cuda_detail;

// [Fused attention] The CUDA kernels of [Tiled attention] (flash_attention.h), per (sequence,
// head) pair and tile; blocks of 4 warps, grid (B*NH, tiles). Shared memory holds every
// operand of the tile products: q, k, v, dO rows as T (rows padded by 16 bytes so that
// consecutive rows start in different banks), scores, probabilities' fp32 copies and every
// accumulator as fp32. The products are warp_mma: for bf16, wmma 16x16x16 tiles (bf16 in, fp32
// accumulators); for float, fp32 FMA on the CUDA cores (no TF32), so that the float path is
// as exact as the unfused one.
// - Forward, a block per 64-row query tile (4 warps x 16 rows), key tiles of 64 (bf16) or 32
//   (float) rows, the last tile the one holding the tile's last visible key (causal: no tile
//   above the diagonal; lengths: none wholly in padding). Each warp owns its 16 query rows
//   throughout: S = Q K^T into its strip of S, the online softmax by two lanes a row (running
//   max and sum in registers, exp2 of log2(e)-prescaled scores), P as T, the strip of the fp32
//   output accumulator O (in shared memory, rescaled in place) += P V. Only the k, v loads need
//   the block's barriers. Shared memory for hs 128: 110 KiB (bf16), 117 KiB (float).
// - Backward, two kernels one after the other on the stream, after a small one that writes
//   D_t = dO_t . O_t (fp32, the only scratch). Each output element is summed by one thread in a
//   fixed order and written by one block, so no atomics: dK, dV by the key tile's block, dQ by
//   the query tile's, at the price of S and dP computed twice (as in FlashAttention-2's
//   deterministic backward and Triton's fused attention).
//   dK, dV: a block per key tile (64 rows bf16, 32 float) that holds a key some query sees; its
//   dK, dV (fp32, shared memory) sum over the query tiles of 32 rows that see it (causal: from
//   the tile holding its first key), in order. Per query tile, in phases separated by the
//   block's barriers: S = Q K^T; P = exp(S - lse) (0 where hidden); dV += P^T dO and
//   dP = dO V^T; dS = scale P (dP - D); dK += dS^T Q, each product split into 16-row strips over
//   the warps. Shared memory for hs 128: 143 KiB (bf16), 117 KiB (float).
//   dQ: a block per 64-row query tile (4 warps x 16 rows), heaviest first, over the key tiles
//   of the forward (64 rows bf16, 32 float; the same last tile), in order. Each warp owns its 16
//   query rows throughout, its lse and D in registers: S = Q K^T and dP = dO V^T into its
//   strips; dS = scale P (dP - D) as T by two lanes a row; its strip of the fp32 dQ (shared
//   memory) += dS K; at the end the block adds dQ into dqkv's q channels, which it alone owns.
//   Only the k, v loads need the block's barriers. Shared memory for hs 128: 144 KiB (bf16),
//   150 KiB (float, dS over S).
// The CPU twin's default tiles (64 x 64) are those of the bf16 forward and dQ kernels; the
// others differ, which moves only the rounding. The tiles fit the 163 KiB an A100 block may opt
// into (checked below); heads of 32, 64 and 128 channels (template dispatch), any T: rows and
// keys past the sequence are zeros in shared memory and masked. Determinism, as [CUDA kernel
// contract] asks: no atomics, and every output (out, lse, dqkv) gives the same bits in every
// run on one GPU.

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
// The opt-in shared memory of one block on an A100 (163 KiB; an H100 allows 227 KiB).
constexpr size_t kMaxSharedBytes = 163 * 1024;

constexpr size_t round128(size_t bytes) {
  return (bytes + 127) / 128 * 128;
}

// Shared memory of the forward kernel, byte offsets (each region 128-byte aligned: wmma wants
// 32-byte aligned tiles).
template <typename E, int HS>
struct ForwardLayout {
  static constexpr int kBQ = 16 * kWarps;  // a 16-row strip per warp
  static constexpr int kBK = std::is_same_v<E, float> ? 32 : 64;
  static constexpr int kPad = 16 / sizeof(E);
  static constexpr int kLdE = HS + kPad;   // q, k, v rows (E)
  static constexpr int kLdS = kBK + 4;     // S (fp32)
  static constexpr int kLdP = kBK + kPad;  // P (E)
  static constexpr int kLdO = HS + 4;      // O (fp32)
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = kQ + round128(sizeof(E) * kBQ * kLdE);
  static constexpr size_t kV = kK + round128(sizeof(E) * kBK * kLdE);
  static constexpr size_t kS = kV + round128(sizeof(E) * kBK * kLdE);
  static constexpr size_t kP = kS + round128(sizeof(float) * kBQ * kLdS);
  static constexpr size_t kO = kP + round128(sizeof(E) * kBQ * kLdP);
  static constexpr size_t kBytes = kO + round128(sizeof(float) * kBQ * kLdO);
  static_assert(kBytes <= kMaxSharedBytes, "forward tiles exceed an A100's shared memory");
};

// Shared memory of the dK, dV kernel. S becomes P (fp32) in place; dP follows it.
template <typename E, int HS>
struct BackwardKVLayout {
  static constexpr int kBK = std::is_same_v<E, float> ? 32 : 64;
  static constexpr int kBQ = 32;
  static constexpr int kPad = 16 / sizeof(E);
  static constexpr int kLdE = HS + kPad;   // k, v, q, dO rows (E)
  static constexpr int kLdAcc = HS + 4;    // dK, dV (fp32)
  static constexpr int kLdS = kBK + 4;     // S -> P, dP (fp32)
  static constexpr int kLdP = kBK + kPad;  // P, dS (E)
  static constexpr size_t kK = 0;
  static constexpr size_t kV = kK + round128(sizeof(E) * kBK * kLdE);
  static constexpr size_t kQ = kV + round128(sizeof(E) * kBK * kLdE);
  static constexpr size_t kDO = kQ + round128(sizeof(E) * kBQ * kLdE);
  static constexpr size_t kDK = kDO + round128(sizeof(E) * kBQ * kLdE);
  static constexpr size_t kDV = kDK + round128(sizeof(float) * kBK * kLdAcc);
  static constexpr size_t kS = kDV + round128(sizeof(float) * kBK * kLdAcc);
  static constexpr size_t kDP = kS + round128(sizeof(float) * kBQ * kLdS);
  static constexpr size_t kPE = kDP + round128(sizeof(float) * kBQ * kLdS);
  static constexpr size_t kDS = kPE + round128(sizeof(E) * kBQ * kLdP);
  static constexpr size_t kLse = kDS + round128(sizeof(E) * kBQ * kLdP);
  static constexpr size_t kDot = kLse + round128(sizeof(float) * kBQ);
  static constexpr size_t kBytes = kDot + round128(sizeof(float) * kBQ);
  static_assert(kBytes <= kMaxSharedBytes, "dK, dV tiles exceed an A100's shared memory");
};

// Shared memory of the dQ kernel: the forward's tiles, dO beside Q, dP beside S, the fp32 dQ
// accumulator in O's place. dS (E) has a region of its own for bf16; for float it overwrites S
// in place (same type and row stride; each element is read, then written, by one thread).
template <typename E, int HS>
struct BackwardQLayout {
  static constexpr bool kFloat = std::is_same_v<E, float>;
  static constexpr int kBQ = 16 * kWarps;  // a 16-row strip per warp
  static constexpr int kBK = kFloat ? 32 : 64;
  static constexpr int kPad = 16 / sizeof(E);
  static constexpr int kLdE = HS + kPad;   // q, dO, k, v rows (E)
  static constexpr int kLdS = kBK + 4;     // S, dP (fp32)
  static constexpr int kLdP = kBK + kPad;  // dS (E)
  static constexpr int kLdAcc = HS + 4;    // dQ (fp32)
  static_assert(!kFloat || kLdP == kLdS, "float dS overwrites S element for element");
  static constexpr size_t kSBytes = round128(sizeof(float) * kBQ * kLdS);
  static constexpr size_t kQ = 0;
  static constexpr size_t kDO = kQ + round128(sizeof(E) * kBQ * kLdE);
  static constexpr size_t kK = kDO + round128(sizeof(E) * kBQ * kLdE);
  static constexpr size_t kV = kK + round128(sizeof(E) * kBK * kLdE);
  static constexpr size_t kS = kV + round128(sizeof(E) * kBK * kLdE);
  static constexpr size_t kDP = kS + kSBytes;
  static constexpr size_t kDS = kFloat ? kS : kDP + kSBytes;
  static constexpr size_t kDQ = kDP + kSBytes + (kFloat ? 0 : round128(sizeof(E) * kBQ * kLdP));
  static constexpr size_t kBytes = kDQ + round128(sizeof(float) * kBQ * kLdAcc);
  static_assert(kBytes <= kMaxSharedBytes, "dQ tiles exceed an A100's shared memory");
};

// What every kernel needs to know of the problem.
struct Problem {
  int B, Tn, C, NH;
  bool causal;
  const int32_t* lengths;  // device, nullable ([Attention mask])
  float scale;             // 1 / sqrt(hs)
  float scale_log2;        // scale * log2(e): exp(scale s - x) = exp2(scale_log2 s - x log2(e))
  bool vec;                // q, k, v (and dO) rows may be moved as 16-byte packs
};

// Sequence b's length, clamped to [1, T] (the host checks lengths where it builds them).
__device__ __forceinline__ int seq_len(const Problem& a, int b) {
  return a.lengths ? min(max(a.lengths[b], 1), a.Tn) : a.Tn;
}
// visible_keys of attention.h: query t sees keys [0, keys_seen).
__device__ __forceinline__ int keys_seen(bool causal, int len, int t) {
  return causal ? min(t + 1, len) : len;
}

// A tile of ROWS rows x HS columns into shared memory (row stride lds): row r from src + r * ldg
// for r < rows, zeros from there on (rows past the sequence or past the keys in use), so that
// masked entries multiply zeros, never stale values.
template <int ROWS, int HS, typename E>
__device__ void load_tile(E* dst, int lds, const E* src, size_t ldg, int rows, bool vec) {
  constexpr int kVec = 16 / sizeof(E);
  if (vec) {
    constexpr int kPacks = HS / kVec;
    for (int i = threadIdx.x; i < ROWS * kPacks; i += kThreads) {
      const int r = i / kPacks, c = i % kPacks * kVec;
      Pack<E, kVec> p;
      if (r < rows) {
        p = load_pack<E, kVec>(src + r * ldg + c);
      } else {
#pragma unroll
        for (int j = 0; j < kVec; ++j)
          p.v[j] = from_f<E>(0.0f);
      }
      store_pack<E, kVec>(dst + r * lds + c, p);
    }
  } else {
    for (int i = threadIdx.x; i < ROWS * HS; i += kThreads) {
      const int r = i / HS, c = i % HS;
      dst[r * lds + c] = r < rows ? src[r * ldg + c] : from_f<E>(0.0f);
    }
  }
}

// C[16 x N] = (kAccumulate ? C : 0) + A[16 x K] B[K x N] by one warp, operands in shared memory:
// A(m, k) = a[m * lda + k], or a[k * lda + m] with kATrans (a stored matrix used transposed);
// B(k, n) = b[k * ldb + n], or b[n * ldb + k] with kBTrans; C fp32, c[m * ldc + n]. bf16: wmma
// tiles (pointers 32-byte aligned, ld a multiple of 8 for bf16 and of 4 for fp32); float: fp32
// FMA, lane l holding rows 4 (l / 8) .. + 3 and columns l % 8 + 8 j.
template <int N, int K, bool kATrans, bool kBTrans, bool kAccumulate, typename E>
__device__ __forceinline__ void warp_mma(float* c, int ldc, const E* a, int lda, const E* b,
                                         int ldb) {
  static_assert(N % 16 == 0 && K % 16 == 0, "warp_mma works on whole 16 x 16 tiles");
  if constexpr (std::is_same_v<E, float>) {
    constexpr int kCols = N / 8;
    const int lane = threadIdx.x % 32;
    const int r0 = lane / 8 * 4, c0 = lane % 8;
    float acc[4][kCols];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < kCols; ++j)
        acc[i][j] = kAccumulate ? c[(r0 + i) * ldc + c0 + 8 * j] : 0.0f;
#pragma unroll 2
    for (int k = 0; k < K; ++k) {
      float av[4], bv[kCols];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        av[i] = kATrans ? a[k * lda + r0 + i] : a[(r0 + i) * lda + k];
#pragma unroll
      for (int j = 0; j < kCols; ++j)
        bv[j] = kBTrans ? b[(c0 + 8 * j) * ldb + k] : b[k * ldb + c0 + 8 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < kCols; ++j)
          acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < kCols; ++j)
        c[(r0 + i) * ldc + c0 + 8 * j] = acc[i][j];
  } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();  // bf16 tensor cores need sm_80; the build's architectures are 80 and 90
#else
    namespace wmma = nvcuda::wmma;
    using LayoutA = std::conditional_t<kATrans, wmma::col_major, wmma::row_major>;
    using LayoutB = std::conditional_t<kBTrans, wmma::col_major, wmma::row_major>;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[N / 16];
#pragma unroll
    for (int n = 0; n < N / 16; ++n) {
      if constexpr (kAccumulate)
        wmma::load_matrix_sync(acc[n], c + 16 * n, ldc, wmma::mem_row_major);
      else
        wmma::fill_fragment(acc[n], 0.0f);
    }
#pragma unroll
    for (int k0 = 0; k0 < K; k0 += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, LayoutA> fa;
      wmma::load_matrix_sync(fa, kATrans ? a + k0 * lda : a + k0, lda);
#pragma unroll
      for (int n = 0; n < N / 16; ++n) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, LayoutB> fb;
        wmma::load_matrix_sync(fb, kBTrans ? b + 16 * n * ldb + k0 : b + k0 * ldb + 16 * n, ldb);
        wmma::mma_sync(acc[n], fa, fb, acc[n]);
      }
    }
#pragma unroll
    for (int n = 0; n < N / 16; ++n)
      wmma::store_matrix_sync(c + 16 * n, acc[n], ldc, wmma::mem_row_major);
#endif
  }
}

// C[M x N] (+)= A[M x K] B[K x N] by the block: 16-row strips, each cut into column chunks
// when there are fewer strips than warps, one (strip, chunk) item per warp in turn. Operand
// conventions as warp_mma's. No barrier inside: the caller orders the phases.
template <int M, int N, int K, bool kATrans, bool kBTrans, bool kAccumulate, typename E>
__device__ __forceinline__ void block_mma(float* c, int ldc, const E* a, int lda, const E* b,
                                          int ldb) {
  constexpr int kStrips = M / 16;
  constexpr int kChunks = kStrips >= kWarps ? 1 : kWarps / kStrips;
  constexpr int kNC = N / kChunks;
  static_assert(M % 16 == 0 && (kStrips >= kWarps || kWarps % kStrips == 0) && N % kChunks == 0 &&
                    kNC % 16 == 0,
                "block_mma: the product does not split into 16 x 16 tiles over the warps");
  for (int item = threadIdx.x / 32; item < kStrips * kChunks; item += kWarps) {
    const int row0 = item / kChunks * 16, col0 = item % kChunks * kNC;
    warp_mma<kNC, K, kATrans, kBTrans, kAccumulate>(c + row0 * ldc + col0, ldc,
                                                    kATrans ? a + row0 : a + row0 * lda, lda,
                                                    kBTrans ? b + col0 * ldb : b + col0, ldb);
  }
}

// Forward ([Fused attention]): block (pair bh, query tile), the heaviest (last) tiles first.
template <typename T, int HS>
__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(T* out, float* lse, const T* qkv, Problem a) {
  using L = ForwardLayout<T, HS>;
  extern __shared__ __align__(128) unsigned char smem[];
  T* sq = reinterpret_cast<T*>(smem + L::kQ);
  T* sk = reinterpret_cast<T*>(smem + L::kK);
  T* sv = reinterpret_cast<T*>(smem + L::kV);
  float* ss = reinterpret_cast<float*>(smem + L::kS);
  T* sp = reinterpret_cast<T*>(smem + L::kP);
  float* so = reinterpret_cast<float*>(smem + L::kO);

  const int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * L::kBQ;
  const int i1 = min(i0 + L::kBQ, a.Tn);
  const int len = seq_len(a, b);
  const int keys = keys_seen(a.causal, len, i1 - 1);  // the tile's last row sees the most
  const size_t C3 = 3 * static_cast<size_t>(a.C);
  const T* head = qkv + static_cast<size_t>(b) * a.Tn * C3 + static_cast<size_t>(h) * HS;

  load_tile<L::kBQ, HS>(sq, L::kLdE, head + i0 * C3, C3, i1 - i0, a.vec);
  for (int i = threadIdx.x; i < L::kBQ * L::kLdO; i += kThreads)
    so[i] = 0.0f;

  // Warp w: tile rows [16 w, 16 w + 16). Lanes 2 r' and 2 r' + 1 share row r = 16 w + r', each
  // taking every other column of S and of O.
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rw = 16 * warp, r = rw + lane / 2, half = lane % 2, t = i0 + r;
  const int vis = t < a.Tn ? keys_seen(a.causal, len, t) : 0;  // rows past T see nothing
  float* srow = ss + r * L::kLdS;
  T* prow = sp + r * L::kLdP;
  float* orow = so + r * L::kLdO;
  float m = -INFINITY, l = 0.0f;  // running max (log2 units) and sum of the row
  for (int j0 = 0; j0 < keys; j0 += L::kBK) {
    __syncthreads();  // the previous tile's products are done with k and v
    const int nk = min(L::kBK, keys - j0);
    load_tile<L::kBK, HS>(sk, L::kLdE, head + a.C + j0 * C3, C3, nk, a.vec);
    load_tile<L::kBK, HS>(sv, L::kLdE, head + 2 * a.C + j0 * C3, C3, nk, a.vec);
    __syncthreads();
    warp_mma<L::kBK, HS, false, true, false>(ss + rw * L::kLdS, L::kLdS, sq + rw * L::kLdE, L::kLdE,
                                             sk, L::kLdE);  // S = Q K^T
    __syncwarp();
    const int seen = min(max(vis - j0, 0), nk);
    float mx = -INFINITY;
    for (int c = half; c < seen; c += 2)
      mx = fmaxf(mx, srow[c] * a.scale_log2);
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m, mx);
    // -inf only while the row has seen no key (rows past T): nothing to rescale, P = 0.
    const float corr = m_new == -INFINITY ? 1.0f : exp2f(m - m_new);
    float sum = 0.0f;
    for (int c = half; c < L::kBK; c += 2) {
      const float p = c < seen ? exp2f(srow[c] * a.scale_log2 - m_new) : 0.0f;
      prow[c] = from_f<T>(p);
      sum += p;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = corr * l + sum;
    m = m_new;
    if (corr != 1.0f) {
      for (int d = half; d < HS; d += 2)
        orow[d] *= corr;
    }
    __syncwarp();
    warp_mma<HS, L::kBK, false, false, true>(so + rw * L::kLdO, L::kLdO, sp + rw * L::kLdP, L::kLdP,
                                             sv, L::kLdE);  // O += P V
  }
  __syncwarp();
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // l >= 1 on every row of the sequence
  for (int d = half; d < HS; d += 2)
    orow[d] *= inv;
  if (half == 0 && t < a.Tn) lse[static_cast<size_t>(bh) * a.Tn + t] = m * kLn2 + logf(l);
  __syncwarp();
  T* out_head = out + static_cast<size_t>(b) * a.Tn * a.C + static_cast<size_t>(h) * HS;
  for (int i = lane; i < 16 * HS; i += 32) {
    const int rr = rw + i / HS, d = i % HS, tt = i0 + rr;
    if (tt < a.Tn) out_head[static_cast<size_t>(tt) * a.C + d] = from_f<T>(so[rr * L::kLdO + d]);
  }
}

// D[bh, t] = dO_t . O_t over head h's channels, in fp32; one warp per (b, t, h), in that order.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    flash_backward_dot_kernel(float* dot, const T* dout, const T* out, int B, int Tn, int C,
                              int NH) {
  const size_t row = blockIdx.x * static_cast<size_t>(kWarps) + threadIdx.x / 32;
  if (row >= static_cast<size_t>(B) * Tn * NH) return;  // whole warps leave together
  const int lane = threadIdx.x % 32, hs = C / NH;
  const int h = static_cast<int>(row % NH);
  const size_t bt = row / NH;
  const int t = static_cast<int>(bt % Tn), b = static_cast<int>(bt / Tn);
  const size_t at = bt * C + static_cast<size_t>(h) * hs;
  float s = 0.0f;
  for (int d = lane; d < hs; d += 32)
    s += to_f(dout[at + d]) * to_f(out[at + d]);
  s = warp_sum(s);
  if (lane == 0) dot[(static_cast<size_t>(b) * NH + h) * Tn + t] = s;
}

// Backward, dK and dV ([Fused attention]): block (pair bh, key tile); adds them into dqkv.
template <typename T, int HS>
__global__ void __launch_bounds__(kThreads)
    flash_backward_kv_kernel(T* dqkv, const T* dout, const T* qkv, const float* lse,
                             const float* dot, Problem a) {
  using L = BackwardKVLayout<T, HS>;
  constexpr int kBQ = L::kBQ, kBK = L::kBK;
  extern __shared__ __align__(128) unsigned char smem[];
  T* sk = reinterpret_cast<T*>(smem + L::kK);
  T* sv = reinterpret_cast<T*>(smem + L::kV);
  T* sq = reinterpret_cast<T*>(smem + L::kQ);
  T* sdo = reinterpret_cast<T*>(smem + L::kDO);
  float* sdk = reinterpret_cast<float*>(smem + L::kDK);
  float* sdv = reinterpret_cast<float*>(smem + L::kDV);
  float* ss = reinterpret_cast<float*>(smem + L::kS);  // S, then P in fp32
  float* sdp = reinterpret_cast<float*>(smem + L::kDP);
  T* sp = reinterpret_cast<T*>(smem + L::kPE);
  T* sds = reinterpret_cast<T*>(smem + L::kDS);
  float* slse = reinterpret_cast<float*>(smem + L::kLse);  // log2 units
  float* sdot = reinterpret_cast<float*>(smem + L::kDot);

  const int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
  const int j0 = blockIdx.y * kBK;
  const int len = seq_len(a, b);
  if (j0 >= len) return;  // keys wholly in padding: no query sees them (the whole block leaves)
  const int nk = min(kBK, len - j0);
  const size_t C3 = 3 * static_cast<size_t>(a.C);
  const size_t seq = static_cast<size_t>(b) * a.Tn;
  const T* head = qkv + seq * C3 + static_cast<size_t>(h) * HS;
  const T* dout_head = dout + seq * a.C + static_cast<size_t>(h) * HS;
  const float* lse_bh = lse + static_cast<size_t>(bh) * a.Tn;
  const float* dot_bh = dot + static_cast<size_t>(bh) * a.Tn;

  load_tile<kBK, HS>(sk, L::kLdE, head + a.C + j0 * C3, C3, nk, a.vec);
  load_tile<kBK, HS>(sv, L::kLdE, head + 2 * a.C + j0 * C3, C3, nk, a.vec);
  for (int i = threadIdx.x; i < kBK * L::kLdAcc; i += kThreads) {
    sdk[i] = 0.0f;
    sdv[i] = 0.0f;
  }
  // Causal: rows before j0 see none of these keys.
  for (int i0 = a.causal ? j0 / kBQ * kBQ : 0; i0 < a.Tn; i0 += kBQ) {
    __syncthreads();  // the previous query tile's last phase is done with q and dS
    const int nq = min(kBQ, a.Tn - i0);
    load_tile<kBQ, HS>(sq, L::kLdE, head + i0 * C3, C3, nq, a.vec);
    load_tile<kBQ, HS>(sdo, L::kLdE, dout_head + static_cast<size_t>(i0) * a.C, a.C, nq, a.vec);
    for (int r = threadIdx.x; r < kBQ; r += kThreads) {
      slse[r] = r < nq ? lse_bh[i0 + r] * kLog2e : 0.0f;
      sdot[r] = r < nq ? dot_bh[i0 + r] : 0.0f;
    }
    __syncthreads();
    block_mma<kBQ, kBK, HS, false, true, false>(ss, L::kLdS, sq, L::kLdE, sk, L::kLdE);  // S
    __syncthreads();
    for (int i = threadIdx.x; i < kBQ * kBK; i += kThreads) {
      const int r = i / kBK, c = i % kBK, t = i0 + r;
      float p = 0.0f;
      if (t < a.Tn && j0 + c < keys_seen(a.causal, len, t))
        p = exp2f(ss[r * L::kLdS + c] * a.scale_log2 - slse[r]);
      ss[r * L::kLdS + c] = p;
      sp[r * L::kLdP + c] = from_f<T>(p);
    }
    __syncthreads();
    block_mma<kBK, HS, kBQ, true, false, true>(sdv, L::kLdAcc, sp, L::kLdP, sdo,
                                               L::kLdE);  // dV += P^T dO
    block_mma<kBQ, kBK, HS, false, true, false>(sdp, L::kLdS, sdo, L::kLdE, sv,
                                                L::kLdE);  // dP = dO V^T
    __syncthreads();
    for (int i = threadIdx.x; i < kBQ * kBK; i += kThreads) {
      const int r = i / kBK, c = i % kBK;
      const float ds = a.scale * ss[r * L::kLdS + c] * (sdp[r * L::kLdS + c] - sdot[r]);
      sds[r * L::kLdP + c] = from_f<T>(ds);  // the score scale folded in
    }
    __syncthreads();
    block_mma<kBK, HS, kBQ, true, false, true>(sdk, L::kLdAcc, sds, L::kLdP, sq,
                                               L::kLdE);  // dK += dS^T Q
  }
  __syncthreads();
  // This block alone owns these keys' k and v channels of head h: plain read-add-write.
  T* dk_head = dqkv + seq * C3 + a.C + static_cast<size_t>(h) * HS;
  for (int i = threadIdx.x; i < nk * HS; i += kThreads) {
    const int r = i / HS, d = i % HS;
    T* dk = dk_head + static_cast<size_t>(j0 + r) * C3 + d;
    *dk = from_f<T>(to_f(*dk) + sdk[r * L::kLdAcc + d]);
    dk[a.C] = from_f<T>(to_f(dk[a.C]) + sdv[r * L::kLdAcc + d]);
  }
}

// Backward, dQ ([Fused attention]): block (pair bh, query tile), the heaviest (last) tiles
// first; adds dQ into dqkv's q channels. Each warp owns 16 query rows throughout, as in the
// forward: only the k, v loads need the block's barriers.
template <typename T, int HS>
__global__ void __launch_bounds__(kThreads)
    flash_backward_dq_kernel(T* dqkv, const T* dout, const T* qkv, const float* lse,
                             const float* dot, Problem a) {
  using L = BackwardQLayout<T, HS>;
  extern __shared__ __align__(128) unsigned char smem[];
  T* sq = reinterpret_cast<T*>(smem + L::kQ);
  T* sdo = reinterpret_cast<T*>(smem + L::kDO);
  T* sk = reinterpret_cast<T*>(smem + L::kK);
  T* sv = reinterpret_cast<T*>(smem + L::kV);
  float* ss = reinterpret_cast<float*>(smem + L::kS);
  float* sdp = reinterpret_cast<float*>(smem + L::kDP);
  T* sds = reinterpret_cast<T*>(smem + L::kDS);
  float* sdq = reinterpret_cast<float*>(smem + L::kDQ);

  const int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * L::kBQ;
  const int i1 = min(i0 + L::kBQ, a.Tn);
  const int len = seq_len(a, b);
  const int keys = keys_seen(a.causal, len, i1 - 1);  // the tile's last row sees the most
  const size_t C3 = 3 * static_cast<size_t>(a.C);
  const size_t seq = static_cast<size_t>(b) * a.Tn;
  const T* head = qkv + seq * C3 + static_cast<size_t>(h) * HS;

  load_tile<L::kBQ, HS>(sq, L::kLdE, head + i0 * C3, C3, i1 - i0, a.vec);
  load_tile<L::kBQ, HS>(sdo, L::kLdE, dout + (seq + i0) * a.C + static_cast<size_t>(h) * HS, a.C,
                        i1 - i0, a.vec);
  for (int i = threadIdx.x; i < L::kBQ * L::kLdAcc; i += kThreads)
    sdq[i] = 0.0f;

  // Warp w: tile rows [16 w, 16 w + 16); lanes 2 r' and 2 r' + 1 share row r = 16 w + r'.
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rw = 16 * warp, r = rw + lane / 2, half = lane % 2, t = i0 + r;
  const bool row_in = t < a.Tn;  // rows past T see nothing
  const int vis = row_in ? keys_seen(a.causal, len, t) : 0;
  const float row_lse = row_in ? lse[static_cast<size_t>(bh) * a.Tn + t] * kLog2e : 0.0f;
  const float row_dot = row_in ? dot[static_cast<size_t>(bh) * a.Tn + t] : 0.0f;
  const float* srow = ss + r * L::kLdS;
  const float* dprow = sdp + r * L::kLdS;
  T* dsrow = sds + r * L::kLdP;
  // The key tiles in order: each row's dQ sums them in the same order in every run.
  for (int j0 = 0; j0 < keys; j0 += L::kBK) {
    __syncthreads();  // the previous tile's products are done with k and v
    const int nk = min(L::kBK, keys - j0);
    load_tile<L::kBK, HS>(sk, L::kLdE, head + a.C + j0 * C3, C3, nk, a.vec);
    load_tile<L::kBK, HS>(sv, L::kLdE, head + 2 * a.C + j0 * C3, C3, nk, a.vec);
    __syncthreads();
    warp_mma<L::kBK, HS, false, true, false>(ss + rw * L::kLdS, L::kLdS, sq + rw * L::kLdE, L::kLdE,
                                             sk, L::kLdE);  // S = Q K^T
    warp_mma<L::kBK, HS, false, true, false>(sdp + rw * L::kLdS, L::kLdS, sdo + rw * L::kLdE,
                                             L::kLdE, sv, L::kLdE);  // dP = dO V^T
    __syncwarp();
    const int seen = min(max(vis - j0, 0), nk);
    for (int c = half; c < L::kBK; c += 2) {
      const float p = c < seen ? exp2f(srow[c] * a.scale_log2 - row_lse) : 0.0f;
      dsrow[c] = from_f<T>(a.scale * p * (dprow[c] - row_dot));  // the score scale folded in
    }
    __syncwarp();
    warp_mma<HS, L::kBK, false, false, true>(sdq + rw * L::kLdAcc, L::kLdAcc, sds + rw * L::kLdP,
                                             L::kLdP, sk, L::kLdE);  // dQ += dS K
  }
  __syncwarp();
  // This block alone owns these rows' q channels of head h: plain read-add-write.
  T* dq_head = dqkv + seq * C3 + static_cast<size_t>(h) * HS;
  for (int i = lane; i < 16 * HS; i += 32) {
    const int rr = rw + i / HS, d = i % HS, tt = i0 + rr;
    if (tt < a.Tn) {
      T* g = dq_head + static_cast<size_t>(tt) * C3 + d;
      *g = from_f<T>(to_f(*g) + sdq[rr * L::kLdAcc + d]);
    }
  }
}

// The launchers' shared checks; returns the head size. Sizes that are not positive are a
// caller's bug (RuntimeFailure); a head size the kernels lack is the user's choice of model
// (UsageError, naming the way out).
int checked_head_size(const char* who, int B, int Tn, int C, int NH) {
  DPT_CHECK(B > 0 && Tn > 0 && C > 0 && NH > 0,
            std::string(who) + ": bad sizes B=" + std::to_string(B) + " T=" + std::to_string(Tn) +
                " C=" + std::to_string(C) + " NH=" + std::to_string(NH));
  const int hs = C % NH == 0 ? C / NH : 0;
  if (!flash_attention_cuda_supports(hs)) {
    const std::string heads = "C=" + std::to_string(C) + " channels in NH=" + std::to_string(NH) +
                              " heads " +
                              (hs == 0 ? std::string("do not split into equal heads")
                                       : "give head size " + std::to_string(hs));
    throw UsageError(std::string(who) + ": " + heads +
                     "; fused attention supports head sizes 32, 64 and 128 only: use "
                     "--attention unfused for other head sizes");
  }
  DPT_CHECK(Tn <= 32 * 65535, std::string(who) + ": T=" + std::to_string(Tn) +
                                  " needs more than 65535 tiles of 32 rows (the grid's y limit)");
  return hs;
}

Problem make_problem(int B, int Tn, int C, int NH, int hs, const AttentionMask& mask, bool vec) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  const double log2e = 1.4426950408889634;
  Problem a{};
  a.B = B;
  a.Tn = Tn;
  a.C = C;
  a.NH = NH;
  a.causal = mask.causal;
  a.lengths = mask.lengths;
  a.scale = static_cast<float>(scale);
  a.scale_log2 = static_cast<float>(scale * log2e);
  a.vec = vec;
  return a;
}

template <typename T, int HS>
void launch_forward(T* out, float* lse, const T* qkv, const Problem& a, cudaStream_t stream) {
  using L = ForwardLayout<T, HS>;
  const auto kernel = flash_forward_kernel<T, HS>;
  DPT_CHECK_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(L::kBytes)));
  const dim3 grid(static_cast<unsigned>(a.B * a.NH),
                  static_cast<unsigned>((a.Tn + L::kBQ - 1) / L::kBQ));
  kernel<<<grid, kThreads, L::kBytes, stream>>>(out, lse, qkv, a);
  DPT_CHECK_LAUNCH(stream);
}

// The two backward kernels, one after the other on the stream: they write disjoint channels of
// dqkv (k, v; then q) and read only the inputs and D.
template <typename T, int HS>
void launch_backward(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* dot,
                     const Problem& a, cudaStream_t stream) {
  using KV = BackwardKVLayout<T, HS>;
  using Q = BackwardQLayout<T, HS>;
  const auto kv_kernel = flash_backward_kv_kernel<T, HS>;
  const auto dq_kernel = flash_backward_dq_kernel<T, HS>;
  DPT_CHECK_CUDA(cudaFuncSetAttribute(kv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(KV::kBytes)));
  DPT_CHECK_CUDA(cudaFuncSetAttribute(dq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(Q::kBytes)));
  const unsigned pairs = static_cast<unsigned>(a.B * a.NH);
  const dim3 kv_grid(pairs, static_cast<unsigned>((a.Tn + KV::kBK - 1) / KV::kBK));
  kv_kernel<<<kv_grid, kThreads, KV::kBytes, stream>>>(dqkv, dout, qkv, lse, dot, a);
  DPT_CHECK_LAUNCH(stream);
  const dim3 dq_grid(pairs, static_cast<unsigned>((a.Tn + Q::kBQ - 1) / Q::kBQ));
  dq_kernel<<<dq_grid, kThreads, Q::kBytes, stream>>>(dqkv, dout, qkv, lse, dot, a);
  DPT_CHECK_LAUNCH(stream);
}

}  // namespace

size_t flash_attention_cuda_scratch_floats(int B, int Tn, int C, int NH) {
  checked_head_size("flash_attention_cuda_scratch_floats", B, Tn, C, NH);
  return static_cast<size_t>(B) * NH * Tn;  // D
}

template <typename T>
void flash_attention_forward_cuda(T* out, float* lse, const T* qkv, int B, int Tn, int C, int NH,
                                  CudaStream stream, const AttentionMask& mask) {
  const int hs = checked_head_size("flash_attention_forward_cuda", B, Tn, C, NH);
  DPT_CHECK(out && lse && qkv, "flash_attention_forward_cuda: null pointer");
  const Problem a = make_problem(B, Tn, C, NH, hs, mask, aligned16(qkv));
  switch (hs) {
    case 32:
      launch_forward<T, 32>(out, lse, qkv, a, stream);
      break;
    case 64:
      launch_forward<T, 64>(out, lse, qkv, a, stream);
      break;
    default:
      launch_forward<T, 128>(out, lse, qkv, a, stream);
      break;
  }
}

template <typename T>
void flash_attention_backward_cuda(T* dqkv, float* scratch, const T* dout, const T* qkv,
                                   const T* out, const float* lse, int B, int Tn, int C, int NH,
                                   CudaStream stream, const AttentionMask& mask) {
  const int hs = checked_head_size("flash_attention_backward_cuda", B, Tn, C, NH);
  DPT_CHECK(dqkv && scratch && dout && qkv && out && lse,
            "flash_attention_backward_cuda: null pointer");
  const Problem a = make_problem(B, Tn, C, NH, hs, mask, aligned16(qkv) && aligned16(dout));
  // Scratch: D (fp32 [B,NH,T]), written here before the backward kernels read it.
  float* dot = scratch;
  const size_t rows = static_cast<size_t>(B) * Tn * NH;
  flash_backward_dot_kernel<T>
      <<<static_cast<unsigned>((rows + kWarps - 1) / kWarps), kThreads, 0, stream>>>(dot, dout, out,
                                                                                     B, Tn, C, NH);
  DPT_CHECK_LAUNCH(stream);
  switch (hs) {
    case 32:
      launch_backward<T, 32>(dqkv, dout, qkv, lse, dot, a, stream);
      break;
    case 64:
      launch_backward<T, 64>(dqkv, dout, qkv, lse, dot, a, stream);
      break;
    default:
      launch_backward<T, 128>(dqkv, dout, qkv, lse, dot, a, stream);
      break;
  }
}

template void flash_attention_forward_cuda<float>(float*, float*, const float*, int, int, int, int,
                                                  CudaStream, const AttentionMask&);
template void flash_attention_forward_cuda<bf16>(bf16*, float*, const bf16*, int, int, int, int,
                                                 CudaStream, const AttentionMask&);
template void flash_attention_backward_cuda<float>(float*, float*, const float*, const float*,
                                                   const float*, const float*, int, int, int, int,
                                                   CudaStream, const AttentionMask&);
template void flash_attention_backward_cuda<bf16>(bf16*, float*, const bf16*, const bf16*,
                                                  const bf16*, const float*, int, int, int, int,
                                                  CudaStream, const AttentionMask&);

}  // namespace dpt::kernels
