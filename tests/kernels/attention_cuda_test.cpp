// attention_forward_cuda / attention_backward_cuda against the CPU reference in double on inputs
// rounded to the dtype: odd shapes (hs odd, T around the warp width), the 16-byte packs of
// [Attention packs] (hs and T multiples of the pack, and buffers moved off 16-byte alignment),
// exact zeros above the diagonal, the ADD contract of the backward, and run-to-run bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "kernels/attention.h"
#include "tests/kernels/cuda_test_util.h"

namespace dpt::kernels::test {
namespace {

struct AttentionShape {
  int B, T, C, NH;
};

// Every B in 1..3 and T in {1, 5, 13, 33} (33: a row longer than a warp) with odd head sizes
// (hs = 3, 5, 7) for NH = 1 and 3, plus one longer sequence: the scalar kernels. Then the
// [Attention packs] (4 floats or 8 bf16): hs = 8 and 16 take them in the layout kernels, T = 8,
// 40 and 264 in the softmax kernels for both dtypes and T = 12 for fp32 only; at T = 264 a row
// is more than one tile of 32 packs (128 floats, 256 bf16), so the softmax's column loop wraps
// with a partial last tile.
std::vector<AttentionShape> shapes() {
  std::vector<AttentionShape> r;
  const int heads[][2] = {{3, 1}, {7, 1}, {9, 3}, {15, 3}, {21, 3}};  // {C, NH}
  for (int B = 1; B <= 3; ++B)
    for (const int T : {1, 5, 13, 33})
      for (const auto& h : heads)
        r.push_back({B, T, h[0], h[1]});
  r.push_back({2, 97, 63, 3});   // hs = 21, rows of four warp-widths
  r.push_back({2, 8, 16, 2});    // hs = 8: one pack of bf16 per head row and per att row
  r.push_back({1, 12, 24, 3});   // hs = 8, T = 12: fp32 packs in the softmax, bf16 scalar
  r.push_back({2, 40, 64, 4});   // hs = 16
  r.push_back({1, 264, 48, 3});  // hs = 16, T = 264
  return r;
}

std::string describe(const char* what, const AttentionShape& s) {
  return std::string(what) + " B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) +
         " C=" + std::to_string(s.C) + " NH=" + std::to_string(s.NH);
}

// See gemm_cuda_test.cpp: pageable uploads may still be in flight on a non-blocking stream.
void sync_uploads() {
  DPT_CHECK_CUDA(cudaDeviceSynchronize());
}

void expect_bit_identical(const std::vector<double>& a, const std::vector<double>& b,
                          const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    diff += std::memcmp(&a[i], &b[i], sizeof(double)) != 0;
  EXPECT_EQ(diff, 0u) << what << ": " << diff << " of " << a.size() << " elements differ";
}

size_t qkv_elems(const AttentionShape& s) {
  return size_t(s.B) * s.T * 3 * s.C;
}
size_t out_elems(const AttentionShape& s) {
  return size_t(s.B) * s.T * s.C;
}
size_t att_elems(const AttentionShape& s) {
  return size_t(s.B) * s.NH * s.T * s.T;
}

// Above-diagonal entries of att that are not +0.0 exactly.
size_t nonzero_above_diagonal(const std::vector<double>& att, const AttentionShape& s) {
  size_t bad = 0;
  for (size_t bh = 0; bh < size_t(s.B) * s.NH; ++bh)
    for (int t = 0; t < s.T; ++t)
      for (int u = t + 1; u < s.T; ++u) {
        const double x = att[(bh * s.T + t) * s.T + u];
        bad += !(x == 0.0 && !std::signbit(x));
      }
  return bad;
}

// The mask's lengths 1 + (5b + 2) mod T: full, short and length-1 sequences ([Attention mask]
// in both places: DeviceMask, cuda_test_util.h).
struct Masks : DeviceMask {
  Masks(const AttentionShape& s, bool causal, bool with_lengths)
      : DeviceMask(lengths(s), causal, with_lengths) {}
  static std::vector<int32_t> lengths(const AttentionShape& s) {
    std::vector<int32_t> lens;
    for (int b = 0; b < s.B; ++b)
      lens.push_back(1 + (5 * b + 2) % s.T);
    return lens;
  }
};

// Placed buffers: [Placed buffers], cuda_test_util.h.
std::string offset_note(size_t offset) {
  return offset == 0 ? "" : " offset=" + std::to_string(offset);
}

// Entries of att that the reference holds as exact zeros (hidden keys) and the kernel does not.
size_t nonzero_hidden(const std::vector<double>& got, const std::vector<double>& want) {
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    bad += want[i] == 0.0 && !(got[i] == 0.0 && !std::signbit(got[i]));
  return bad;
}

// Forward: out and att poisoned with NaN, scratch too (written before read). Every buffer
// `offset` elements into its allocation (Placed).
template <typename T>
void check_forward(GemmCuda& gemm, cudaStream_t stream, const AttentionShape& s, uint64_t seed,
                   const Masks& m, size_t offset = 0) {
  const std::string what = describe("attention forward", s) + m.name + offset_note(offset);
  const std::vector<double> qkv = random_vector(qkv_elems(s), seed, 1);
  const std::vector<double> r_qkv = rounded_to<T>(qkv);
  std::vector<double> want_out(out_elems(s)), want_att(att_elems(s));
  attention_forward_cpu<double>(want_out.data(), want_att.data(), r_qkv.data(), s.B, s.T, s.C, s.NH,
                                m.cpu);

  const Placed<T> d_qkv = placed<T>(qkv, offset);
  const Placed<T> d_out = placed_poison<T>(out_elems(s), offset),
                  d_att = placed_poison<T>(att_elems(s), offset);
  const Placed<T> scratch =
      placed_poison<T>(attention_cuda_scratch_elems(s.B, s.T, s.C, s.NH), offset);
  sync_uploads();
  attention_forward_cuda<T>(d_out.get(), d_att.get(), d_qkv.get(), scratch.get(), s.B, s.T, s.C,
                            s.NH, gemm, stream, m.gpu);
  const std::vector<double> got_att = d_att.values();
  expect_close(d_out.values(), want_out, tolerance<T>(), what + " out");
  expect_close(got_att, want_att, tolerance<T>(), what + " att");
  if (m.cpu.causal && !m.cpu.lengths) {
    EXPECT_EQ(nonzero_above_diagonal(got_att, s), 0u)
        << what << ": att above the diagonal must be exact zeros";
  }
  EXPECT_EQ(nonzero_hidden(got_att, want_att), 0u) << what << ": hidden keys must be exact zeros";
}

// Backward: dqkv prefilled with random values (ADD), scratch poisoned. Both sides get the same
// att, the double reference's probabilities rounded to T (zeros above the diagonal stay exact),
// so the check is of the backward alone. Buffers placed as in check_forward.
template <typename T>
void check_backward(GemmCuda& gemm, cudaStream_t stream, const AttentionShape& s, uint64_t seed,
                    const Masks& m, size_t offset = 0) {
  const std::string what = describe("attention backward", s) + m.name + offset_note(offset);
  const std::vector<double> qkv = random_vector(qkv_elems(s), seed, 1);
  const std::vector<double> dout = random_vector(out_elems(s), seed, 2);
  const std::vector<double> dqkv0 = random_vector(qkv_elems(s), seed, 3);
  const std::vector<double> r_qkv = rounded_to<T>(qkv), r_dout = rounded_to<T>(dout);
  std::vector<double> out(out_elems(s)), att(att_elems(s));
  attention_forward_cpu<double>(out.data(), att.data(), r_qkv.data(), s.B, s.T, s.C, s.NH, m.cpu);
  const std::vector<double> r_att = rounded_to<T>(att);
  std::vector<double> want = rounded_to<T>(dqkv0);
  std::vector<double> ref_scratch(attention_backward_scratch_elems(s.B, s.T, s.NH));
  attention_backward_cpu<double>(want.data(), ref_scratch.data(), r_dout.data(), r_qkv.data(),
                                 r_att.data(), s.B, s.T, s.C, s.NH, m.cpu);

  const Placed<T> d_qkv = placed<T>(qkv, offset), d_dout = placed<T>(dout, offset),
                  d_att = placed<T>(att, offset), d_dqkv = placed<T>(dqkv0, offset);
  const Placed<T> scratch =
      placed_poison<T>(attention_cuda_scratch_elems(s.B, s.T, s.C, s.NH), offset);
  sync_uploads();
  attention_backward_cuda<T>(d_dqkv.get(), scratch.get(), d_dout.get(), d_qkv.get(), d_att.get(),
                             s.B, s.T, s.C, s.NH, gemm, stream, m.gpu);
  expect_close(d_dqkv.values(), want, tolerance<T>(), what + " dqkv");
}

// The bf16 bound (1e-2) holds with room: a CPU emulation of this path (bf16 rounding of the
// scores, probabilities, datt, dpreatt, the per-head products and the final add; fp32 sums)
// over these shapes and three seeds gave at most 4.4e-3 (out), 3.2e-3 (att), 2.7e-3 (dqkv).
template <typename T>
void check_all(uint64_t seed) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  for (const AttentionShape& s : shapes()) {
    const Masks causal(s, true, false);
    check_forward<T>(gemm, stream.get(), s, seed++, causal);
    check_backward<T>(gemm, stream.get(), s, seed++, causal);
    if (testing::Test::HasFatalFailure()) return;
  }
}

// The masks of the other tasks ([Attention mask]): bidirectional, with and without padding,
// and causal with padding.
template <typename T>
void check_masks(uint64_t seed) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  for (const AttentionShape& s : shapes()) {
    for (const auto& [causal, lengths] : {std::pair{false, false}, {false, true}, {true, true}}) {
      const Masks m(s, causal, lengths);
      check_forward<T>(gemm, stream.get(), s, seed++, m);
      check_backward<T>(gemm, stream.get(), s, seed++, m);
      if (testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(AttentionCuda, EveryMaskMatchesTheDoubleReferenceInFp32AndBf16) {
  check_masks<float>(3000);
  check_masks<bf16>(4000);
}

TEST(AttentionCuda, Fp32ForwardAndBackwardMatchDoubleReferenceOnOddShapes) {
  check_all<float>(100);
}

TEST(AttentionCuda, Bf16ForwardAndBackwardMatchDoubleReferenceOnOddShapes) {
  check_all<bf16>(1000);
}

// GPT-2's sequence length: rows of 1024 scores (32 warp-widths; 8 tiles of 32 fp32 packs, 4 of
// bf16 packs) through the softmax kernels' column loops, head size 64, one and two sequences.
TEST(AttentionCuda, SequenceOf1024MatchesDoubleReferenceInFp32AndBf16) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  uint64_t seed = 5000;
  for (const AttentionShape& s :
       {AttentionShape{1, 1024, 128, 2}, AttentionShape{2, 1024, 64, 1}}) {
    const Masks causal(s, true, false);
    check_forward<float>(gemm, stream.get(), s, seed++, causal);
    check_backward<float>(gemm, stream.get(), s, seed++, causal);
    check_forward<bf16>(gemm, stream.get(), s, seed++, causal);
    check_backward<bf16>(gemm, stream.get(), s, seed++, causal);
  }
}

// Shapes that take the [Attention packs], with every buffer one element off 16-byte alignment:
// the scalar kernels instead, the same results.
TEST(AttentionCuda, BuffersOffSixteenByteAlignmentMatchTheDoubleReference) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  uint64_t seed = 6000;
  for (const AttentionShape& s : {AttentionShape{2, 40, 64, 4}, AttentionShape{1, 264, 48, 3}}) {
    for (const auto& [causal, lengths] : {std::pair{true, false}, {false, true}}) {
      const Masks m(s, causal, lengths);
      check_forward<float>(gemm, stream.get(), s, seed++, m, 1);
      check_backward<float>(gemm, stream.get(), s, seed++, m, 1);
      check_forward<bf16>(gemm, stream.get(), s, seed++, m, 1);
      check_backward<bf16>(gemm, stream.get(), s, seed++, m, 1);
      if (testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(AttentionCuda, ScratchHoldsSevenActivationsAndOneScoreMatrixPerHead) {
  EXPECT_EQ(attention_cuda_scratch_elems(3, 13, 21, 3), 7u * 3 * 13 * 21 + 3u * 3 * 13 * 13);
  EXPECT_EQ(attention_cuda_scratch_elems(1, 1, 3, 1), 7u * 3 + 1u);
}

TEST(AttentionCuda, RejectsChannelsThatDoNotSplitIntoEqualHeads) {
  expect_runtime_failure_mentioning([] { attention_cuda_scratch_elems(2, 5, 10, 3); },
                                    {"equal heads"});
}

// Forward then backward twice from the same inputs: the same bits in out, att and dqkv.
template <typename T>
void check_repeatable(const AttentionShape& s, uint64_t seed) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  DeviceBuffer<T> qkv = to_device<T>(random_vector(qkv_elems(s), seed, 1));
  DeviceBuffer<T> dout = to_device<T>(random_vector(out_elems(s), seed, 2));
  DeviceBuffer<T> scratch(attention_cuda_scratch_elems(s.B, s.T, s.C, s.NH));
  std::vector<double> runs[2][3];
  for (auto& run : runs) {
    DeviceBuffer<T> out = poisoned_device<T>(out_elems(s)), att = poisoned_device<T>(att_elems(s));
    DeviceBuffer<T> dqkv = to_device<T>(random_vector(qkv_elems(s), seed, 3));
    sync_uploads();
    attention_forward_cuda<T>(out.get(), att.get(), qkv.get(), scratch.get(), s.B, s.T, s.C, s.NH,
                              gemm, stream.get());
    attention_backward_cuda<T>(dqkv.get(), scratch.get(), dout.get(), qkv.get(), att.get(), s.B,
                               s.T, s.C, s.NH, gemm, stream.get());
    run[0] = from_device(out);
    run[1] = from_device(att);
    run[2] = from_device(dqkv);
  }
  expect_bit_identical(runs[0][0], runs[1][0], "out");
  expect_bit_identical(runs[0][1], runs[1][1], "att");
  expect_bit_identical(runs[0][2], runs[1][2], "dqkv");
}

TEST(AttentionCuda, ForwardAndBackwardAreBitIdenticalAcrossRuns) {
  const AttentionShape scalar{3, 129, 75, 3};  // hs = 25
  const AttentionShape packed{2, 264, 64, 4};  // hs = 16, T = 264: [Attention packs]
  check_repeatable<float>(scalar, 2000);
  check_repeatable<bf16>(scalar, 2001);
  check_repeatable<float>(packed, 2002);
  check_repeatable<bf16>(packed, 2003);
}

}  // namespace
}  // namespace dpt::kernels::test
