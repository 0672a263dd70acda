// Tiled attention in the FlashAttention-2 manner: the forward pass never holds the T x T
// probabilities, only one log-sum-exp per query row; the backward pass recomputes them a tile at
// a time.
#pragma once

#include "kernels/attention.h"

namespace dpt::kernels {

// [Tiled attention] Per (sequence, head), queries in tiles of tile_q rows against keys in tiles
// of tile_k rows, q, k and v read with their strides straight from qkv [B,T,3C] (layouts and
// the mask as in attention.h).
// Forward, for a query tile: running row maxima m (start -inf), sums l (0) and outputs acc (0);
// for each key tile that holds a key some row of the tile sees (tiles wholly above the causal
// diagonal, or wholly in padding, are skipped):
//     S = scale Q K^T (hidden keys -inf),  m' = max(m, rowmax S),  P = exp(S - m'),
//     l = exp(m - m') l + rowsum P,  acc = exp(m - m') acc + P V,  m = m';
// then out = acc / l and lse = m + log l, the log of the softmax's denominator, which is all the
// backward pass keeps of the probabilities.
// Backward, for a key tile (its dK, dV summed over the query tiles that see it), with
// D_t = dO_t . O_t:
//     P = exp(S - lse) (0 where hidden),  dV += P^T dO,  dP = dO V^T,  dS = P (dP - D),
//     dQ += scale dS K,  dK += scale dS^T Q.
// The softmax statistics and every sum are kept in Acc: float for T = float (as the GPU kernels
// keep them in fp32 for bf16 too), double for T = double. This CPU version is the twin of the
// CUDA kernels' algorithm, tested against attention_forward_cpu / attention_backward_cpu in
// double. Its default 64 x 64 tiles are those of the CUDA bf16 forward and dQ kernels only: the
// float kernels take key tiles of 32 rows and the dK, dV kernel query tiles of 32 rows
// ([Fused attention]), and the GPU sums dQ in a kernel of its own. Tiles change only the
// order of the sums, hence the rounding, not the result in exact arithmetic.
inline constexpr int kFlashTileQ = 64;
inline constexpr int kFlashTileK = 64;

// out [B,T,C]; lse [B,NH,T].
template <typename T>
void flash_attention_forward_cpu(T* out, T* lse, const T* qkv, int B, int Tn, int C, int NH,
                                 const AttentionMask& mask = {}, int tile_q = kFlashTileQ,
                                 int tile_k = kFlashTileK);

// Adds into dqkv [B,T,3C]; out and lse are the forward pass's.
template <typename T>
void flash_attention_backward_cpu(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                                  int B, int Tn, int C, int NH, const AttentionMask& mask = {},
                                  int tile_q = kFlashTileQ, int tile_k = kFlashTileK);

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
// [Tiled attention] on the GPU, designed in [Fused attention] (flash_attention.cu): T float or
// __nv_bfloat16, q, k, v read with their strides straight from qkv, the mask of attention.h
// (lengths a device array), softmax statistics and every sum in fp32. Head sizes 32, 64 and 128
// only: any other (or C not a multiple of NH) throws UsageError, whose message says to use
// --attention unfused. Deterministic as [CUDA kernel contract] asks: no atomics, so the forward's
// and the backward's outputs give the same bits in every run on one GPU.

// Whether the CUDA kernels take heads of head_size channels (inline: CPU-only builds ask too).
inline bool flash_attention_cuda_supports(int head_size) {
  return head_size == 32 || head_size == 64 || head_size == 128;
}

// out [B,T,C]; lse fp32 [B,NH,T], the natural log of each query row's softmax denominator (its
// scaled scores' log-sum-exp), all the backward pass keeps of the probabilities.
template <typename T>
void flash_attention_forward_cuda(T* out, float* lse, const T* qkv, int B, int Tn, int C, int NH,
                                  CudaStream stream, const AttentionMask& mask = {});

// fp32 elements of scratch the backward pass needs: D = dO . O [B,NH,T]. Throws UsageError for
// the head sizes the kernels lack, as the passes do.
size_t flash_attention_cuda_scratch_floats(int B, int Tn, int C, int NH);

// Adds into dqkv [B,T,3C]; out and lse are the forward pass's (same mask). scratch has
// flash_attention_cuda_scratch_floats(B, T, C, NH) floats and is overwritten (written before it
// is read: it needs no zeroing).
template <typename T>
void flash_attention_backward_cuda(T* dqkv, float* scratch, const T* dout, const T* qkv,
                                   const T* out, const float* lse, int B, int Tn, int C, int NH,
                                   CudaStream stream, const AttentionMask& mask = {});

}  // namespace dpt::kernels
