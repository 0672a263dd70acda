// Multi-head self-attention: scaled scores, a mask (causal, or bidirectional with padding),
// softmax, weighted sum.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/cuda_stream.h"
#include "kernels/gemm.h"

namespace dpt::kernels {

// [Attention mask] Which keys a query sees. Causal (language modelling): s <= t. Bidirectional
// (classification, regression): every s. With lengths, sequence b's positions s >= len[b] are
// padding that no query sees; queries at padding positions see the valid keys (their outputs
// are defined and mean nothing). lengths: a host array for the CPU functions, a device array
// for CUDA, len[b] in [1, T]; null: every sequence is T long. The default is round one's
// causal attention.
struct AttentionMask {
  bool causal = true;
  const int32_t* lengths = nullptr;
};
// Query t of sequence b sees keys [0, visible_keys(...)), never none.
inline int visible_keys(bool causal, int len, int t) {
  return causal ? std::min(t + 1, len) : len;
}

// Layouts (NH heads of size hs = C / NH):
//   qkv [B,T,3C]: at each position q = channels [0,C), k = [C,2C), v = [2C,3C);
//                 head h uses channels [h*hs, (h+1)*hs) of each of q, k, v.
//   att [B,NH,T,T]: softmax probabilities; row t holds the keys it sees ([Attention mask]),
//                   every other column is exactly 0.
//   out [B,T,C]: the heads' outputs side by side (head h at channels [h*hs, (h+1)*hs)).
// scores[t,s] = q_t . k_s / sqrt(hs) for the keys t sees; att = softmax over them;
// out_t = sum_s att[t,s] v_s.
template <typename T>
void attention_forward_cpu(T* out, T* att, const T* qkv, int B, int Tn, int C, int NH,
                           const AttentionMask& mask = {});

// Elements of scratch memory attention_backward_cpu needs.
inline size_t attention_backward_scratch_elems(int B, int Tn, int NH) {
  return static_cast<size_t>(B) * NH * Tn * Tn;
}

// Adds into dqkv [B,T,3C]. att is the forward pass's output; scratch has
// attention_backward_scratch_elems(B, T, NH) elements and is overwritten.
template <typename T>
void attention_backward_cpu(T* dqkv, T* scratch, const T* dout, const T* qkv, const T* att, int B,
                            int Tn, int C, int NH, const AttentionMask& mask = {});

// [Attention decode] One new query against a key/value cache (generation): q [C] of the newest
// position, k_cache and v_cache [n_keys, C] holding every position so far (the newest last),
// out [C] its heads' outputs side by side, probs [NH, n_keys] the attention probabilities.
// Causal by construction: the cache holds only the past. Computes what row n_keys - 1 of
// attention_forward_cpu computes, without the T x T square.
template <typename T>
void attention_decode_cpu(T* out, T* probs, const T* q, const T* k_cache, const T* v_cache,
                          int n_keys, int C, int NH);

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
// Same layouts and meaning as the CPU functions, T float or __nv_bfloat16; the scores and the
// weighted sums are batched matrix products (GemmCuda::gemm_batched) over B*NH heads, the
// masked softmax a kernel of our own. att [B,NH,T,T] keeps the probabilities (exact zeros
// where the mask hides a key) for the backward pass.

// Elements (of T) of scratch the forward and backward passes need: q, k, v in [B,NH,T,hs]
// order and one [B,NH,T,T] buffer.
size_t attention_cuda_scratch_elems(int B, int Tn, int C, int NH);

template <typename T>
void attention_forward_cuda(T* out, T* att, const T* qkv, T* scratch, int B, int Tn, int C, int NH,
                            GemmCuda& gemm, CudaStream stream, const AttentionMask& mask = {});

// Adds into dqkv [B,T,3C]. scratch as above; overwritten.
template <typename T>
void attention_backward_cuda(T* dqkv, T* scratch, const T* dout, const T* qkv, const T* att, int B,
                             int Tn, int C, int NH, GemmCuda& gemm, CudaStream stream,
                             const AttentionMask& mask = {});

// [Attention decode] on the GPU: the same, T float or __nv_bfloat16, probs fp32 [NH, n_keys]
// (nullable), one block per head; n_keys * 4 bytes of shared memory (at most 48 KiB: 12,288
// keys).
template <typename T>
void attention_decode_cuda(T* out, float* probs, const T* q, const T* k_cache, const T* v_cache,
                           int n_keys, int C, int NH, CudaStream stream);

}  // namespace dpt::kernels
