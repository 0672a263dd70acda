// softmax_cross_entropy_*_cuda and loss_sum_accumulate_cuda against the CPU reference in double
// (float and bf16, odd vocabularies, the GPT-2 padded one, rows padded as the language model
// pads them with NaN in the padding), the in-place backward, NaN logits, and determinism.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cross_entropy.h"
#include "tests/kernels/cuda_test_util.h"

namespace dpt::kernels::test {
namespace {

struct Shape {
  int N, V, ld;  // ld: the row stride ([Padded vocabulary])
};
// V = 304 / 50304 take the 16-byte path for both dtypes, the odd V unpadded the scalar one; V = 1
// and 3 leave most threads of the row's block without an element. Padded rows (ld > V, ld a
// multiple of 64 as ModelConfig::padded_vocab makes them) take the 16-byte path with a masked
// last pack: GPT-2's 50257 in 50304, 301 in 320, 7 in 64.
constexpr Shape kShapes[] = {{1, 1, 1},      {3, 7, 7},         {5, 13, 13},       {11, 301, 301},
                             {7, 304, 304},  {67, 301, 301},    {3, 50304, 50304}, {5, 7, 64},
                             {13, 301, 320}, {3, 50257, 50304}, {2, 1, 64}};

std::string label(const char* what, const Shape& s) {
  return std::string(what) + " N=" + std::to_string(s.N) + " V=" + std::to_string(s.V) +
         " ld=" + std::to_string(s.ld);
}

// logsumexp of each row, in double.
std::vector<double> row_lse(const std::vector<double>& logits, int N, int V) {
  std::vector<double> lse(N);
  for (int n = 0; n < N; ++n) {
    const double* z = logits.data() + static_cast<size_t>(n) * V;
    const double m = *std::max_element(z, z + V);
    double s = 0.0;
    for (int v = 0; v < V; ++v)
      s += std::exp(z[v] - m);
    lse[n] = m + std::log(s);
  }
  return lse;
}

template <typename T>
void check_forward(const Shape& s, uint64_t seed) {
  const size_t n = static_cast<size_t>(s.N) * s.V;
  const auto logits = rounded_to<T>(random_vector(n, seed, 0, 2.0));
  const auto targets = random_ids(s.N, s.V, seed, 1);
  std::vector<double> want_loss(s.N), probs(n);
  softmax_cross_entropy_forward_cpu<double>(want_loss.data(), probs.data(), logits.data(),
                                            targets.data(), s.N, s.V, s.V);
  const auto want_lse = row_lse(logits, s.N, s.V);

  auto d_logits = to_device<T>(padded_rows(logits, s.N, s.V, s.ld, std::nan("")));
  auto d_targets = ids_to_device(targets);
  auto d_loss = poisoned_device<float>(s.N);
  auto d_lse = poisoned_device<float>(s.N);
  softmax_cross_entropy_forward_cuda<T>(d_loss.get(), d_lse.get(), d_logits.get(), d_targets.get(),
                                        s.N, s.V, s.ld, nullptr);
  // fp32 results from exactly representable logits: the fp32 bound holds for either T.
  expect_close(from_device(d_loss), want_loss, tolerance<float>(), label("ce loss", s));
  expect_close(from_device(d_lse), want_lse, tolerance<float>(), label("ce lse", s));
}

// Backward from the reference lse rounded to fp32 (what the forward hands over), dlogits
// WRITTEN: into a poisoned buffer, or in place over the logits.
template <typename T>
void check_backward(const Shape& s, bool in_place, uint64_t seed) {
  const size_t n = static_cast<size_t>(s.N) * s.V;
  const auto logits = rounded_to<T>(random_vector(n, seed, 0, 2.0));
  const auto targets = random_ids(s.N, s.V, seed, 1);
  const float dloss = 0.37f / s.N;  // a mean over N with a loss scale
  std::vector<double> losses(s.N), probs(n), want(n, 0.0);
  softmax_cross_entropy_forward_cpu<double>(losses.data(), probs.data(), logits.data(),
                                            targets.data(), s.N, s.V, s.V);
  const std::vector<double> dlosses(s.N, dloss);
  softmax_cross_entropy_backward_cpu<double>(want.data(), dlosses.data(), probs.data(),
                                             targets.data(), s.N, s.V, s.V);

  auto d_logits = to_device<T>(padded_rows(logits, s.N, s.V, s.ld, std::nan("")));
  auto d_targets = ids_to_device(targets);
  auto d_lse = to_device<float>(rounded_to<float>(row_lse(logits, s.N, s.V)));
  DeviceBuffer<T> d_out =
      in_place ? DeviceBuffer<T>() : poisoned_device<T>(static_cast<size_t>(s.N) * s.ld);
  T* dlogits = in_place ? d_logits.get() : d_out.get();
  softmax_cross_entropy_backward_cuda<T>(dlogits, d_logits.get(), d_lse.get(), d_targets.get(),
                                         dloss, s.N, s.V, s.ld, nullptr);
  expect_close(unpadded_rows(from_device(in_place ? d_logits : d_out), s.N, s.V, s.ld), want,
               tolerance<T>(), label(in_place ? "ce dlogits in place" : "ce dlogits", s));
}

TEST(CrossEntropyCuda, ForwardMatchesCpuReferenceFloat) {
  for (const Shape& s : kShapes)
    check_forward<float>(s, 900);
}
TEST(CrossEntropyCuda, ForwardMatchesCpuReferenceBf16) {
  for (const Shape& s : kShapes)
    check_forward<bf16>(s, 901);
}
TEST(CrossEntropyCuda, BackwardWritesCpuReferenceGradientFloat) {
  for (const Shape& s : kShapes)
    check_backward<float>(s, false, 910);
}
TEST(CrossEntropyCuda, BackwardWritesCpuReferenceGradientBf16) {
  for (const Shape& s : kShapes)
    check_backward<bf16>(s, false, 911);
}
TEST(CrossEntropyCuda, BackwardInPlaceOverLogitsMatchesCpuReferenceFloat) {
  for (const Shape& s : kShapes)
    check_backward<float>(s, true, 920);
}
TEST(CrossEntropyCuda, BackwardInPlaceOverLogitsMatchesCpuReferenceBf16) {
  for (const Shape& s : kShapes)
    check_backward<bf16>(s, true, 921);
}

// A NaN logit anywhere in a row (the first element a thread sees, the last, the middle) makes
// that row's loss non-finite, so the [Non-finite guard] skips the step; other rows stay finite.
template <typename T>
void check_nan_logit_poisons_its_row(int V) {
  const int N = 4;
  auto logits = random_vector(static_cast<size_t>(N) * V, 930, 0);
  logits[0] = std::nan("");                                   // row 0, first element
  logits[static_cast<size_t>(1) * V + V - 1] = std::nan("");  // row 1, last element
  logits[static_cast<size_t>(2) * V + 17] = std::nan("");     // row 2, middle
  const auto targets = random_ids(N, V, 930, 1);
  auto d_logits = to_device<T>(logits);
  auto d_targets = ids_to_device(targets);
  auto d_loss = poisoned_device<float>(N);
  auto d_lse = poisoned_device<float>(N);
  softmax_cross_entropy_forward_cuda<T>(d_loss.get(), d_lse.get(), d_logits.get(), d_targets.get(),
                                        N, V, V, nullptr);
  const auto loss = from_device(d_loss);
  for (int n = 0; n < 3; ++n)
    EXPECT_FALSE(std::isfinite(loss[n])) << "row " << n << " V=" << V;
  EXPECT_TRUE(std::isfinite(loss[3])) << "V=" << V;
}
TEST(CrossEntropyCuda, NanLogitGivesNonFiniteLossForItsRow) {
  for (int V : {301, 304, 50304}) {
    check_nan_logit_poisons_its_row<float>(V);
    check_nan_logit_poisons_its_row<bf16>(V);
  }
}

TEST(CrossEntropyCuda, ForwardAndBackwardAreBitwiseDeterministicBf16) {
  const int N = 16, V = 50304;
  const size_t n = static_cast<size_t>(N) * V;
  const auto logits = random_vector(n, 940, 0, 2.0);
  const auto targets = random_ids(N, V, 940, 1);
  auto d_targets = ids_to_device(targets);
  std::vector<float> loss_runs[2], lse_runs[2];
  std::vector<bf16> grad_runs[2];
  for (int run = 0; run < 2; ++run) {
    auto d_logits = to_device<bf16>(logits);
    DeviceBuffer<float> d_loss(N), d_lse(N);
    softmax_cross_entropy_forward_cuda<bf16>(d_loss.get(), d_lse.get(), d_logits.get(),
                                             d_targets.get(), N, V, V, nullptr);
    softmax_cross_entropy_backward_cuda<bf16>(d_logits.get(), d_logits.get(), d_lse.get(),
                                              d_targets.get(), 1.0f / N, N, V, V, nullptr);
    loss_runs[run] = host_copy(d_loss);
    lse_runs[run] = host_copy(d_lse);
    grad_runs[run] = host_copy(d_logits);
  }
  EXPECT_EQ(std::memcmp(loss_runs[0].data(), loss_runs[1].data(), N * 4), 0);
  EXPECT_EQ(std::memcmp(lse_runs[0].data(), lse_runs[1].data(), N * 4), 0);
  EXPECT_EQ(std::memcmp(grad_runs[0].data(), grad_runs[1].data(), n * sizeof(bf16)), 0);
}

TEST(LossSumCuda, AddsTheSumOfLossesInAFixedOrder) {
  for (int n : {1, 5, 1000, 4099}) {
    // Positive, as losses are: the relative bound is not at the mercy of cancellation.
    auto losses = random_vector(n, 950, 0, 3.0);
    for (double& l : losses)
      l = std::fabs(l) + 0.1;
    losses = rounded_to<float>(losses);
    const double start = 2.5;
    double want = start;
    for (double l : losses)
      want += l;
    auto d_losses = to_device<float>(losses);
    std::vector<float> runs[2];
    for (int run = 0; run < 2; ++run) {
      auto d_sum = to_device<float>({start});
      loss_sum_accumulate_cuda(d_sum.get(), d_losses.get(), n, nullptr);
      runs[run] = host_copy(d_sum);
      expect_close({static_cast<double>(runs[run][0])}, {want}, tolerance<float>(),
                   "loss sum n=" + std::to_string(n));
    }
    EXPECT_EQ(std::memcmp(runs[0].data(), runs[1].data(), 4), 0) << "n=" << n;
  }
}

}  // namespace
}  // namespace dpt::kernels::test
