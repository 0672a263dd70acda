// What the CPU attentions share (attention_cpu.cpp, flash_attention_cpu.cpp): where each
// (sequence, head) pair sits in the layouts of attention.h, and the checks of the heads and the
// [Attention mask]'s lengths. Internal to kernels/.
#pragma once

#include <cstddef>
#include <string>

#include "common/errors.h"
#include "kernels/attention.h"

namespace dpt::kernels::attention_detail {

inline void check_heads(int C, int NH) {
  DPT_CHECK(NH > 0 && C % NH == 0, "attention: channels C=" + std::to_string(C) +
                                       " must split into NH=" + std::to_string(NH) +
                                       " equal heads");
}

// Sequence b's length under the mask, checked. Call it for every b before a parallel region,
// which must not throw.
inline int length_of(const AttentionMask& mask, int b, int Tn) {
  if (!mask.lengths) return Tn;
  const int n = mask.lengths[b];
  DPT_CHECK(n >= 1 && n <= Tn, "attention: sequence " + std::to_string(b) + " has length " +
                                   std::to_string(n) + ", outside [1, " + std::to_string(Tn) + "]");
  return n;
}

// Where pair bh = b * NH + h sits in each layout of attention.h: its head's q in qkv (k and v
// follow at +C and +2C), its head's channels in a [B,T,C] tensor (out, dout), and its T x T
// slice of att.
struct HeadOffsets {
  size_t qkv, out, att;
};
inline HeadOffsets head_offsets(int bh, int NH, int Tn, int C) {
  const size_t b = bh / NH, h = bh % NH, hs = C / NH, T = Tn;
  return {b * T * 3 * C + h * hs, b * T * C + h * hs, static_cast<size_t>(bh) * T * T};
}

}  // namespace dpt::kernels::attention_detail
