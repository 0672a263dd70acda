// softmax_cross_entropy_forward_cpu / _backward_cpu: naive log-softmax, finite differences,
// float vs double, underflow, and targets outside the vocabulary.
#include "kernels/cross_entropy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernel_test_util.h"

namespace dpt::kernels::test {
namespace {

constexpr int N = 9, V = 13;

TEST(CrossEntropy, ForwardMatchesNaiveLogSoftmax) {
  const auto logits = random_vector(N * V, 50, 0, 2.0);
  const auto targets = random_ids(N, V, 50, 1);
  auto losses = poisoned<double>(N);
  auto probs = poisoned<double>(N * V);
  softmax_cross_entropy_forward_cpu<double>(losses.data(), probs.data(), logits.data(),
                                            targets.data(), N, V, V);
  std::vector<double> want_losses(N), want_probs(N * V);
  for (int n = 0; n < N; ++n) {
    double sum = 0.0;
    for (int v = 0; v < V; ++v) {
      sum += std::exp(logits[n * V + v]);
    }
    for (int v = 0; v < V; ++v) {
      want_probs[n * V + v] = std::exp(logits[n * V + v]) / sum;
    }
    want_losses[n] = -(logits[n * V + targets[n]] - std::log(sum));
  }
  expect_all_close(losses, want_losses, 1e-13, 1e-14, "losses");
  expect_all_close(probs, want_probs, 1e-13, 1e-15, "probs");
}

TEST(CrossEntropy, ForwardFloatAgreesWithDouble) {
  const auto logits = random_vector(N * V, 51, 0, 2.0);
  const auto targets = random_ids(N, V, 51, 1);
  std::vector<double> dl(N), dp(N * V);
  softmax_cross_entropy_forward_cpu<double>(dl.data(), dp.data(), logits.data(), targets.data(), N,
                                            V, V);
  const auto logitsf = cast_to<float>(logits);
  auto fl = poisoned<float>(N), fp = poisoned<float>(N * V);
  softmax_cross_entropy_forward_cpu<float>(fl.data(), fp.data(), logitsf.data(), targets.data(), N,
                                           V, V);
  expect_all_close(to_double(fl), dl, 1e-5, 1e-6, "losses");
  expect_all_close(to_double(fp), dp, 1e-5, 1e-7, "probs");
}

TEST(CrossEntropy, LossStaysFiniteWhenTargetProbabilityUnderflows) {
  // exp(-200) underflows in float and exp(-800) in double, yet the loss is simply the gap.
  for (const double gap : {200.0, 800.0}) {
    std::vector<double> logits(V, 0.0);
    for (int v = 0; v < V; ++v) {
      logits[v] = 0.01 * v;
    }
    logits[3] = logits[0] - gap;
    const std::vector<int32_t> target{3};
    // loss = logsumexp - logit[3]; exp(logit[3]) adds nothing at this gap.
    double others = 0.0;
    for (int v = 0; v < V; ++v) {
      if (v != 3) others += std::exp(logits[v]);
    }
    const double want = std::log(others) + gap;
    double loss = NAN;
    std::vector<double> probs(V);
    softmax_cross_entropy_forward_cpu<double>(&loss, probs.data(), logits.data(), target.data(), 1,
                                              V, V);
    EXPECT_NEAR(loss, want, 1e-9 * want) << "double, gap " << gap;
    if (gap < 300.0) {
      const auto logitsf = cast_to<float>(logits);
      float lossf = NAN;
      std::vector<float> probsf(V);
      softmax_cross_entropy_forward_cpu<float>(&lossf, probsf.data(), logitsf.data(), target.data(),
                                               1, V, V);
      EXPECT_EQ(probsf[3], 0.0f) << "test premise: the probability underflows in float";
      EXPECT_NEAR(lossf, want, 1e-5 * want) << "float, gap " << gap;
    }
  }
}

TEST(CrossEntropy, BackwardMatchesFiniteDifferencesAndAddsIntoGradients) {
  auto logits = random_vector(N * V, 52, 0, 2.0);
  const auto targets = random_ids(N, V, 52, 1);
  const auto R = random_vector(N, 52, 2);
  std::vector<double> losses(N), probs(N * V);
  const auto objective = [&] {
    softmax_cross_entropy_forward_cpu<double>(losses.data(), probs.data(), logits.data(),
                                              targets.data(), N, V, V);
    return dot(losses, R);
  };
  objective();
  const auto saved_probs = probs;
  const auto dlogits0 = random_vector(N * V, 52, 3);
  auto dlogits = dlogits0;
  softmax_cross_entropy_backward_cpu<double>(dlogits.data(), R.data(), saved_probs.data(),
                                             targets.data(), N, V, V);
  expect_all_close(minus(dlogits, dlogits0), numeric_gradient(logits, objective), kGradRtol,
                   kGradAtol, "dlogits");
}

TEST(CrossEntropy, RejectsTargetOutsideVocabularyBeforeWritingAnything) {
  const auto logits = random_vector(N * V, 53, 0);
  for (const int32_t bad : {V, -1}) {
    SCOPED_TRACE("bad id " + std::to_string(bad));
    auto targets = random_ids(N, V, 53, 1);
    const int pos = N - 1;
    targets[pos] = bad;
    auto losses = poisoned<double>(N), probs = poisoned<double>(N * V);
    expect_runtime_failure_mentioning(
        [&] {
          softmax_cross_entropy_forward_cpu<double>(losses.data(), probs.data(), logits.data(),
                                                    targets.data(), N, V, V);
        },
        {"id " + std::to_string(bad), "position " + std::to_string(pos), std::to_string(V)});
    for (double x : probs) {
      ASSERT_TRUE(std::isnan(x)) << "forward wrote before throwing";
    }

    const auto dlosses = random_vector(N, 53, 2);
    const auto dlogits0 = random_vector(N * V, 53, 3);
    auto dlogits = dlogits0;
    std::vector<double> p(N * V, 1.0 / V);
    expect_runtime_failure_mentioning(
        [&] {
          softmax_cross_entropy_backward_cpu<double>(dlogits.data(), dlosses.data(), p.data(),
                                                     targets.data(), N, V, V);
        },
        {"id " + std::to_string(bad), "position " + std::to_string(pos)});
    EXPECT_EQ(dlogits, dlogits0) << "backward wrote before throwing";
  }
}

// [Padded vocabulary]: rows ld > V apart give the unpadded rows' losses, probabilities and
// gradients bit for bit, and the padding is neither read (it holds NaN) nor written.
TEST(CrossEntropy, PaddedRowsGiveTheUnpaddedResultsAndLeaveThePaddingAlone) {
  constexpr int ld = 64;
  const auto logits = random_vector(N * V, 54, 0, 2.0);
  const auto targets = random_ids(N, V, 54, 1);
  const auto dlosses = random_vector(N, 54, 2);
  std::vector<double> losses(N), probs(N * V), dlogits(N * V, 0.0);
  softmax_cross_entropy_forward_cpu<double>(losses.data(), probs.data(), logits.data(),
                                            targets.data(), N, V, V);
  softmax_cross_entropy_backward_cpu<double>(dlogits.data(), dlosses.data(), probs.data(),
                                             targets.data(), N, V, V);

  const std::vector<double> plogits = padded_rows(logits, N, V, ld, std::nan(""));
  std::vector<double> pprobs(N * ld, -7.0),
      pdlogits = padded_rows(std::vector<double>(N * V, 0.0), N, V, ld, -7.0);
  std::vector<double> plosses(N);
  softmax_cross_entropy_forward_cpu<double>(plosses.data(), pprobs.data(), plogits.data(),
                                            targets.data(), N, V, ld);
  softmax_cross_entropy_backward_cpu<double>(pdlogits.data(), dlosses.data(), pprobs.data(),
                                             targets.data(), N, V, ld);
  EXPECT_EQ(plosses, losses);
  for (int n = 0; n < N; ++n) {
    for (int v = 0; v < ld; ++v) {
      const size_t at = static_cast<size_t>(n) * ld + v;
      if (v < V) {
        ASSERT_EQ(pprobs[at], probs[n * V + v]) << "row " << n << " column " << v;
        ASSERT_EQ(pdlogits[at], dlogits[n * V + v]) << "row " << n << " column " << v;
      } else {
        ASSERT_EQ(pprobs[at], -7.0) << "padding written, row " << n << " column " << v;
        ASSERT_EQ(pdlogits[at], -7.0) << "padding written, row " << n << " column " << v;
      }
    }
  }
}

}  // namespace
}  // namespace dpt::kernels::test
