// [Tiled attention]: the CPU twin of the CUDA kernels' FlashAttention-2 algorithm against the
// plain attention (attention_forward_cpu / attention_backward_cpu) in double, for every
// [Attention mask], sequences that are not a multiple of the tile, one and several heads, head
// sizes 32, 64 and 128, and tiles of the CUDA kernels' size and of odd sizes; float against
// double; the log-sum-exp against its definition.
#include "kernels/flash_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernel_test_util.h"

namespace dpt::kernels::test {
namespace {

struct Shape {
  int B, T, C, NH;
};
// Head sizes 32, 64 and 128; T below, at, just past and well past a 64-row tile.
const Shape kShapes[] = {{1, 1, 32, 1},    {2, 5, 64, 2},  {1, 63, 64, 1}, {2, 65, 128, 2},
                         {1, 130, 128, 1}, {2, 97, 96, 3}, {1, 64, 64, 1}};
struct Tiles {
  int q, k;
};
const Tiles kTiles[] = {{kFlashTileQ, kFlashTileK}, {16, 8}, {7, 5}};

struct MaskCase {
  std::string name;
  bool causal;
  bool with_lengths;
};
const MaskCase kMasks[] = {{"causal", true, false},
                           {"bidirectional", false, false},
                           {"bidirectional with lengths", false, true},
                           {"causal with lengths", true, true}};

// Lengths in [1, T] that differ between sequences (the last one full).
std::vector<int32_t> lengths_for(const Shape& s) {
  std::vector<int32_t> len(s.B);
  for (int b = 0; b < s.B; ++b)
    len[b] = b + 1 == s.B ? s.T : std::max(1, (s.T * (b + 1)) / (s.B + 1) - 1);
  return len;
}

std::string label(const char* what, const Shape& s, const Tiles& t, const MaskCase& m) {
  return std::string(what) + " B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) +
         " C=" + std::to_string(s.C) + " NH=" + std::to_string(s.NH) + " tiles " +
         std::to_string(t.q) + "x" + std::to_string(t.k) + ", " + m.name;
}

size_t qkv_elems(const Shape& s) {
  return static_cast<size_t>(s.B) * s.T * 3 * s.C;
}
size_t btc(const Shape& s) {
  return static_cast<size_t>(s.B) * s.T * s.C;
}

TEST(FlashAttention, ForwardAndBackwardMatchPlainAttentionInDouble) {
  uint64_t seed = 70;
  for (const Shape& s : kShapes) {
    for (const MaskCase& mc : kMasks) {
      const std::vector<int32_t> len = lengths_for(s);
      const AttentionMask mask{mc.causal, mc.with_lengths ? len.data() : nullptr};
      const std::vector<double> qkv = random_vector(qkv_elems(s), seed, 1);
      const std::vector<double> dout = random_vector(btc(s), seed, 2);
      const std::vector<double> dqkv0 = random_vector(qkv_elems(s), seed, 3);
      ++seed;
      std::vector<double> out(btc(s)), att(static_cast<size_t>(s.B) * s.NH * s.T * s.T);
      attention_forward_cpu<double>(out.data(), att.data(), qkv.data(), s.B, s.T, s.C, s.NH, mask);
      std::vector<double> dqkv = dqkv0, scratch(attention_backward_scratch_elems(s.B, s.T, s.NH));
      attention_backward_cpu<double>(dqkv.data(), scratch.data(), dout.data(), qkv.data(),
                                     att.data(), s.B, s.T, s.C, s.NH, mask);
      for (const Tiles& t : kTiles) {
        std::vector<double> fout = poisoned<double>(btc(s));
        std::vector<double> lse = poisoned<double>(static_cast<size_t>(s.B) * s.NH * s.T);
        flash_attention_forward_cpu<double>(fout.data(), lse.data(), qkv.data(), s.B, s.T, s.C,
                                            s.NH, mask, t.q, t.k);
        expect_all_close(fout, out, 1e-12, 1e-13, label("out", s, t, mc));
        std::vector<double> fdqkv = dqkv0;
        flash_attention_backward_cpu<double>(fdqkv.data(), dout.data(), qkv.data(), fout.data(),
                                             lse.data(), s.B, s.T, s.C, s.NH, mask, t.q, t.k);
        expect_all_close(fdqkv, dqkv, 1e-10, 1e-12, label("dqkv", s, t, mc));
        if (testing::Test::HasFailure()) return;
      }
    }
  }
}

// lse[b,h,t] = log sum_s exp(q_t . k_s / sqrt(hs)) over the keys t sees, straight from the
// definition.
TEST(FlashAttention, LogSumExpIsTheSoftmaxDenominator) {
  const Shape s{2, 70, 64, 2};
  const int hs = s.C / s.NH;
  for (const MaskCase& mc : kMasks) {
    const std::vector<int32_t> len = lengths_for(s);
    const AttentionMask mask{mc.causal, mc.with_lengths ? len.data() : nullptr};
    const std::vector<double> qkv = random_vector(qkv_elems(s), 81, 1);
    std::vector<double> out(btc(s)), lse(static_cast<size_t>(s.B) * s.NH * s.T);
    flash_attention_forward_cpu<double>(out.data(), lse.data(), qkv.data(), s.B, s.T, s.C, s.NH,
                                        mask);
    std::vector<double> want(lse.size());
    for (int b = 0; b < s.B; ++b)
      for (int h = 0; h < s.NH; ++h)
        for (int t = 0; t < s.T; ++t) {
          const int seen = visible_keys(mc.causal, mc.with_lengths ? len[b] : s.T, t);
          double sum = 0;
          for (int k = 0; k < seen; ++k) {
            double dot = 0;
            for (int d = 0; d < hs; ++d) {
              const size_t row_q = (static_cast<size_t>(b) * s.T + t) * 3 * s.C;
              const size_t row_k = (static_cast<size_t>(b) * s.T + k) * 3 * s.C;
              dot += qkv[row_q + h * hs + d] * qkv[row_k + s.C + h * hs + d];
            }
            sum += std::exp(dot / std::sqrt(static_cast<double>(hs)));
          }
          want[(static_cast<size_t>(b) * s.NH + h) * s.T + t] = std::log(sum);
        }
    expect_all_close(lse, want, 1e-12, 1e-12, "lse, " + mc.name);
  }
}

// Float keeps its softmax statistics and sums in float: within float's rounding of the double
// reference.
TEST(FlashAttention, FloatAgreesWithDouble) {
  const Shape s{2, 97, 128, 2};
  const std::vector<double> qkv = random_vector(qkv_elems(s), 91, 1);
  const std::vector<double> dout = random_vector(btc(s), 91, 2);
  const AttentionMask mask{};
  std::vector<double> out(btc(s)), lse(static_cast<size_t>(s.B) * s.NH * s.T);
  flash_attention_forward_cpu<double>(out.data(), lse.data(), qkv.data(), s.B, s.T, s.C, s.NH,
                                      mask);
  std::vector<double> dqkv(qkv.size(), 0.0);
  flash_attention_backward_cpu<double>(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(),
                                       s.B, s.T, s.C, s.NH, mask);
  const std::vector<float> qkvf = cast_to<float>(qkv), doutf = cast_to<float>(dout);
  std::vector<float> outf(out.size()), lsef(lse.size()), dqkvf(qkv.size(), 0.0f);
  flash_attention_forward_cpu<float>(outf.data(), lsef.data(), qkvf.data(), s.B, s.T, s.C, s.NH,
                                     mask);
  flash_attention_backward_cpu<float>(dqkvf.data(), doutf.data(), qkvf.data(), outf.data(),
                                      lsef.data(), s.B, s.T, s.C, s.NH, mask);
  const Closeness o = closeness(to_double(outf), out), g = closeness(to_double(dqkvf), dqkv);
  EXPECT_LE(o.norm_rel, 1e-5);
  EXPECT_LE(o.worst, 1e-4);
  EXPECT_LE(g.norm_rel, 1e-5);
  EXPECT_LE(g.worst, 1e-4);
}

TEST(FlashAttention, ALengthOutsideTheSequenceIsRefused) {
  const Shape s{1, 4, 8, 1};
  const std::vector<double> qkv = random_vector(qkv_elems(s), 5, 1);
  std::vector<double> out(btc(s)), lse(4);
  const int32_t bad = 5;
  expect_runtime_failure_mentioning(
      [&] {
        flash_attention_forward_cpu<double>(out.data(), lse.data(), qkv.data(), 1, 4, 8, 1,
                                            AttentionMask{true, &bad});
      },
      {"sequence 0 has length 5", "[1, 4]"});
}

}  // namespace
}  // namespace dpt::kernels::test
