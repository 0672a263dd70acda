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
// double; its tiles are the CUDA kernels' by default.
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

}  // namespace dpt::kernels
