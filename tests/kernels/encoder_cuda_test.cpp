// encoder_forward_cuda / encoder_backward_cuda against the CPU reference in double (float and
// bf16, odd shapes, repeated tokens, shapes past one pass of the capped grid), their determinism,
// and the host-side encoder_buckets.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/encoder.h"
#include "tests/kernels/cuda_test_util.h"

namespace dpt::kernels::test {
namespace {

struct Shape {
  int B, Tn, C, V;
};
// Small V against many positions forces long buckets (repeated tokens); C = 96 takes the 16-byte
// path for both dtypes, the odd C the scalar one.
constexpr Shape kShapes[] = {{1, 1, 1, 1},     {3, 5, 7, 11},    {5, 7, 13, 3},
                             {2, 13, 96, 301}, {7, 11, 97, 301}, {4, 33, 64, 5}};

// Past one pass of encoder.cu's capped grid (kMaxBlocks 4096 x kThreads 256 = 2^20 threads),
// so that the grid-stride loops run again. The forward takes one thread per pack of C: with
// C = 1032 and 8 x VEC sequences of 129 (VEC = 16 / sizeof(T), 32 sequences in fp32 and 64 in
// bf16), 8 x 129 x 1032 = 1,065,024 packs; with the odd C = 517 (the scalar path), 16 x 129
// rows hold 1,067,088 elements. The wpe gradient takes one thread per (t, c): 1025 x 1032 =
// 1,057,800. Apart, so that the forward's large batch costs no large dout.
template <typename T>
constexpr Shape wrap_forward_packed() {
  return {static_cast<int>(8 * (16 / sizeof(T))), 129, 1032, 301};
}
constexpr Shape kWrapForwardScalar{16, 129, 517, 301};
constexpr Shape kWrapBackward{1, 1025, 1032, 301};

std::string label(const char* what, const Shape& s) {
  return std::string(what) + " B=" + std::to_string(s.B) + " T=" + std::to_string(s.Tn) +
         " C=" + std::to_string(s.C) + " V=" + std::to_string(s.V);
}

// The position table has two rows more than T: only rows 0..T-1 may be read.
int wpe_rows(const Shape& s) {
  return s.Tn + 2;
}

template <typename T>
void check_forward(const Shape& s, uint64_t seed) {
  const size_t rows = static_cast<size_t>(s.B) * s.Tn;
  const auto tokens = random_ids(rows, s.V, seed, 0);
  const auto wte = rounded_to<T>(random_vector(static_cast<size_t>(s.V) * s.C, seed, 1));
  const auto wpe = rounded_to<T>(random_vector(static_cast<size_t>(wpe_rows(s)) * s.C, seed, 2));
  std::vector<double> want(rows * s.C);
  encoder_forward_cpu<double>(want.data(), tokens.data(), wte.data(), wpe.data(), s.B, s.Tn, s.C,
                              s.V);

  auto d_out = poisoned_device<T>(rows * s.C);
  auto d_tokens = ids_to_device(tokens);
  auto d_wte = to_device<T>(wte);
  auto d_wpe = to_device<T>(wpe);
  encoder_forward_cuda<T>(d_out.get(), d_tokens.get(), d_wte.get(), d_wpe.get(), s.B, s.Tn, s.C,
                          nullptr);
  expect_close(from_device(d_out), want, tolerance<T>(), label("encoder out", s));
}

// Device copies of the buckets of `tokens`.
struct DeviceBuckets {
  DeviceBuffer<int32_t> order, start, token;
  int n_buckets = 0;
};
DeviceBuckets device_buckets(const std::vector<int32_t>& tokens, int V) {
  EmbeddingBuckets b;
  encoder_buckets(&b, tokens.data(), static_cast<int>(tokens.size()), V);
  return {ids_to_device(b.order), ids_to_device(b.bucket_start), ids_to_device(b.bucket_token),
          static_cast<int>(b.bucket_token.size())};
}

template <typename T>
void check_backward(const Shape& s, uint64_t seed) {
  const size_t rows = static_cast<size_t>(s.B) * s.Tn;
  const auto tokens = random_ids(rows, s.V, seed, 0);
  const auto dout = rounded_to<T>(random_vector(rows * s.C, seed, 3));
  // ADD outputs start from random values; both sides add into the same fp32 start.
  const auto dwte0 = rounded_to<float>(random_vector(static_cast<size_t>(s.V) * s.C, seed, 4));
  const auto dwpe0 =
      rounded_to<float>(random_vector(static_cast<size_t>(wpe_rows(s)) * s.C, seed, 5));
  auto want_wte = dwte0;
  auto want_wpe = dwpe0;
  encoder_backward_cpu<double>(want_wte.data(), want_wpe.data(), dout.data(), tokens.data(), s.B,
                               s.Tn, s.C, s.V);

  const DeviceBuckets bk = device_buckets(tokens, s.V);
  auto d_dout = to_device<T>(dout);
  auto d_dwte = to_device<float>(dwte0);
  auto d_dwpe = to_device<float>(dwpe0);
  encoder_backward_cuda<T>(d_dwte.get(), d_dwpe.get(), d_dout.get(), bk.order.get(), bk.start.get(),
                           bk.token.get(), bk.n_buckets, s.B, s.Tn, s.C, nullptr);
  // The gradients are fp32 sums of exactly representable inputs, so the fp32 bound holds for
  // either input dtype.
  expect_close(from_device(d_dwte), want_wte, tolerance<float>(), label("encoder dwte", s));
  expect_close(from_device(d_dwpe), want_wpe, tolerance<float>(), label("encoder dwpe", s));
}

template <typename T>
void check_backward_deterministic() {
  const Shape s{4, 128, 257, 50};  // ~10 positions per token
  const size_t rows = static_cast<size_t>(s.B) * s.Tn;
  const auto tokens = random_ids(rows, s.V, 650, 0);
  const auto dout = random_vector(rows * s.C, 650, 1);
  const auto dwte0 = random_vector(static_cast<size_t>(s.V) * s.C, 650, 2);
  const auto dwpe0 = random_vector(static_cast<size_t>(s.Tn) * s.C, 650, 3);
  const DeviceBuckets bk = device_buckets(tokens, s.V);
  auto d_dout = to_device<T>(dout);
  std::vector<float> wte_runs[2], wpe_runs[2];
  for (int run = 0; run < 2; ++run) {
    auto d_dwte = to_device<float>(dwte0);
    auto d_dwpe = to_device<float>(dwpe0);
    encoder_backward_cuda<T>(d_dwte.get(), d_dwpe.get(), d_dout.get(), bk.order.get(),
                             bk.start.get(), bk.token.get(), bk.n_buckets, s.B, s.Tn, s.C, nullptr);
    wte_runs[run] = host_copy(d_dwte);
    wpe_runs[run] = host_copy(d_dwpe);
  }
  EXPECT_EQ(std::memcmp(wte_runs[0].data(), wte_runs[1].data(), wte_runs[0].size() * 4), 0);
  EXPECT_EQ(std::memcmp(wpe_runs[0].data(), wpe_runs[1].data(), wpe_runs[0].size() * 4), 0);
}

TEST(EncoderCuda, ForwardMatchesCpuReferenceFloat) {
  for (const Shape& s : kShapes)
    check_forward<float>(s, 600);
}
TEST(EncoderCuda, ForwardMatchesCpuReferenceBf16) {
  for (const Shape& s : kShapes)
    check_forward<bf16>(s, 601);
}
TEST(EncoderCuda, BackwardMatchesCpuReferenceAndAddsIntoGradientsFloat) {
  for (const Shape& s : kShapes)
    check_backward<float>(s, 610);
}
TEST(EncoderCuda, BackwardMatchesCpuReferenceAndAddsIntoGradientsBf16) {
  for (const Shape& s : kShapes)
    check_backward<bf16>(s, 611);
}
TEST(EncoderCuda, ShapesPastOnePassOfTheCappedGridMatchCpuReference) {
  check_forward<float>(wrap_forward_packed<float>(), 602);
  check_forward<bf16>(wrap_forward_packed<bf16>(), 603);
  check_forward<float>(kWrapForwardScalar, 604);
  check_backward<float>(kWrapBackward, 612);
  check_backward<bf16>(kWrapBackward, 613);
}
TEST(EncoderCuda, BackwardIsBitwiseDeterministicFloat) {
  check_backward_deterministic<float>();
}
TEST(EncoderCuda, BackwardIsBitwiseDeterministicBf16) {
  check_backward_deterministic<bf16>();
}

// --- encoder_buckets (host) -------------------------------------------------------------------

TEST(EncoderBuckets, GroupsPositionsByTokenInPositionOrder) {
  const std::vector<int32_t> tokens = {3, 1, 3, 0, 1, 3};
  EmbeddingBuckets b;
  encoder_buckets(&b, tokens.data(), static_cast<int>(tokens.size()), 5);
  EXPECT_EQ(b.order, (std::vector<int32_t>{3, 1, 4, 0, 2, 5}));
  EXPECT_EQ(b.bucket_start, (std::vector<int32_t>{0, 1, 3, 6}));
  EXPECT_EQ(b.bucket_token, (std::vector<int32_t>{0, 1, 3}));
}

TEST(EncoderBuckets, ReusedBucketsHoldOnlyTheNewTokens) {
  // A second call on the same object (as the model does each micro-batch) starts clean.
  EmbeddingBuckets b;
  const std::vector<int32_t> first = {4, 4, 2, 0, 1, 3, 2};
  encoder_buckets(&b, first.data(), static_cast<int>(first.size()), 5);
  const std::vector<int32_t> second = {2, 2};
  encoder_buckets(&b, second.data(), static_cast<int>(second.size()), 5);
  EXPECT_EQ(b.order, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(b.bucket_start, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(b.bucket_token, (std::vector<int32_t>{2}));
}

TEST(EncoderBuckets, RandomTokensFormAStablePartitionOfAllPositions) {
  const int n = 1000, V = 37;
  const auto tokens = random_ids(n, V, 620, 0);
  EmbeddingBuckets b;
  encoder_buckets(&b, tokens.data(), n, V);
  ASSERT_EQ(b.order.size(), static_cast<size_t>(n));
  ASSERT_EQ(b.bucket_start.size(), b.bucket_token.size() + 1);
  EXPECT_EQ(b.bucket_start.front(), 0);
  EXPECT_EQ(b.bucket_start.back(), n);
  std::vector<int> seen(n, 0);
  for (size_t j = 0; j < b.bucket_token.size(); ++j) {
    if (j > 0) {
      EXPECT_LT(b.bucket_token[j - 1], b.bucket_token[j]) << "buckets sorted by token";
    }
    ASSERT_LT(b.bucket_start[j], b.bucket_start[j + 1]) << "no empty bucket";
    for (int q = b.bucket_start[j]; q < b.bucket_start[j + 1]; ++q) {
      const int pos = b.order[q];
      ASSERT_GE(pos, 0);
      ASSERT_LT(pos, n);
      ++seen[pos];
      EXPECT_EQ(tokens[pos], b.bucket_token[j]) << "position " << pos;
      if (q > b.bucket_start[j]) {
        EXPECT_LT(b.order[q - 1], pos) << "position order in a bucket";
      }
    }
  }
  for (int i = 0; i < n; ++i)
    EXPECT_EQ(seen[i], 1) << "position " << i;
}

TEST(EncoderBuckets, NoPositionsGiveNoBuckets) {
  EmbeddingBuckets b;
  encoder_buckets(&b, nullptr, 0, 7);
  EXPECT_TRUE(b.order.empty());
  EXPECT_EQ(b.bucket_start, (std::vector<int32_t>{0}));
  EXPECT_TRUE(b.bucket_token.empty());
}

TEST(EncoderBuckets, RejectsTokenOutsideVocabulary) {
  EmbeddingBuckets b;
  const std::vector<int32_t> high = {0, 1, 5, 2};
  expect_runtime_failure_mentioning([&] { encoder_buckets(&b, high.data(), 4, 5); },
                                    {"token id 5", "position 2", "[0, 5)"});
  const std::vector<int32_t> negative = {-1};
  expect_runtime_failure_mentioning([&] { encoder_buckets(&b, negative.data(), 1, 5); },
                                    {"token id -1", "position 0"});
}

}  // namespace
}  // namespace dpt::kernels::test
