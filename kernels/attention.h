// Causal multi-head self-attention: scaled scores, causal mask, softmax, weighted sum.
#pragma once

#include <cstddef>

namespace dpt::kernels {

// Layouts (NH heads of size hs = C / NH):
//   qkv [B,T,3C]: at each position q = channels [0,C), k = [C,2C), v = [2C,3C);
//                 head h uses channels [h*hs, (h+1)*hs) of each of q, k, v.
//   att [B,NH,T,T]: softmax probabilities; row t holds columns 0..t, columns > t are 0.
//   out [B,T,C]: the heads' outputs side by side (head h at channels [h*hs, (h+1)*hs)).
// scores[t,s] = q_t . k_s / sqrt(hs) for s <= t; att = softmax over s; out_t = sum_s att[t,s] v_s.
template <typename T>
void attention_forward_cpu(T* out, T* att, const T* qkv, int B, int Tn, int C, int NH);

// Elements of scratch memory attention_backward_cpu needs.
inline size_t attention_backward_scratch_elems(int B, int Tn, int NH) {
  return static_cast<size_t>(B) * NH * Tn * Tn;
}

// Adds into dqkv [B,T,3C]. att is the forward pass's output; scratch has
// attention_backward_scratch_elems(B, T, NH) elements and is overwritten.
template <typename T>
void attention_backward_cpu(T* dqkv, T* scratch, const T* dout, const T* qkv, const T* att, int B,
                            int Tn, int C, int NH);

}  // namespace dpt::kernels
