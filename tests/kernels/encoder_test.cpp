// encoder_forward_cpu / encoder_backward_cpu: lookup, finite differences with repeated tokens,
// float vs double, determinism, and ids outside the vocabulary.
#include "kernels/encoder.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "kernel_test_util.h"

namespace dpt::kernels::test {
namespace {

constexpr int B = 2, Tn = 5, C = 7, V = 13;
constexpr int kWpeRows = Tn + 2;  // wpe may hold more positions than T; the extra rows are unused

// Random tokens with a repeat, so that the scatter into dwte must accumulate.
std::vector<int32_t> test_tokens() {
  auto tokens = random_ids(B * Tn, V, 40, 0);
  tokens[7] = tokens[1];
  tokens[8] = tokens[1];
  return tokens;
}

TEST(Encoder, ForwardAddsTokenAndPositionRows) {
  const auto tokens = test_tokens();
  const auto wte = random_vector(V * C, 41, 0);
  const auto wpe = random_vector(kWpeRows * C, 41, 1);
  auto out = poisoned<double>(B * Tn * C);
  encoder_forward_cpu<double>(out.data(), tokens.data(), wte.data(), wpe.data(), B, Tn, C, V);
  std::vector<double> want(B * Tn * C);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < Tn; ++t) {
      for (int c = 0; c < C; ++c) {
        want[(b * Tn + t) * C + c] = wte[tokens[b * Tn + t] * C + c] + wpe[t * C + c];
      }
    }
  }
  expect_all_close(out, want, 0.0, 0.0, "encoder out");
}

TEST(Encoder, ForwardFloatAgreesWithDouble) {
  const auto tokens = test_tokens();
  const auto wte = random_vector(V * C, 42, 0);
  const auto wpe = random_vector(kWpeRows * C, 42, 1);
  std::vector<double> d(B * Tn * C);
  encoder_forward_cpu<double>(d.data(), tokens.data(), wte.data(), wpe.data(), B, Tn, C, V);
  const auto wtef = cast_to<float>(wte), wpef = cast_to<float>(wpe);
  auto f = poisoned<float>(B * Tn * C);
  encoder_forward_cpu<float>(f.data(), tokens.data(), wtef.data(), wpef.data(), B, Tn, C, V);
  expect_all_close(to_double(f), d, 1e-6, 1e-7, "encoder float vs double");
}

TEST(Encoder, BackwardMatchesFiniteDifferencesAndAddsIntoGradients) {
  const auto tokens = test_tokens();
  auto wte = random_vector(V * C, 43, 0);
  auto wpe = random_vector(kWpeRows * C, 43, 1);
  const auto R = random_vector(B * Tn * C, 43, 2);
  std::vector<double> out(B * Tn * C);
  const auto objective = [&] {
    encoder_forward_cpu<double>(out.data(), tokens.data(), wte.data(), wpe.data(), B, Tn, C, V);
    return dot(out, R);
  };
  const auto dwte0 = random_vector(V * C, 43, 3);
  const auto dwpe0 = random_vector(kWpeRows * C, 43, 4);
  auto dwte = dwte0, dwpe = dwpe0;
  encoder_backward_cpu<double>(dwte.data(), dwpe.data(), R.data(), tokens.data(), B, Tn, C, V);
  // Unused vocabulary rows and the extra wpe rows have numeric gradient 0: they must be unchanged.
  expect_all_close(minus(dwte, dwte0), numeric_gradient(wte, objective), kGradRtol, kGradAtol,
                   "dwte");
  expect_all_close(minus(dwpe, dwpe0), numeric_gradient(wpe, objective), kGradRtol, kGradAtol,
                   "dwpe");
}

TEST(Encoder, BackwardIsBitwiseDeterministicWithTwoThreads) {
  ScopedCpuThreads threads(2);
  constexpr int Bd = 4, Td = 9, Cd = 70, Vd = 13;  // many repeats among 36 tokens of 13
  const auto tokens = random_ids(Bd * Td, Vd, 44, 0);
  const auto dout = cast_to<float>(random_vector(Bd * Td * Cd, 44, 1));
  std::vector<float> dwte[2], dwpe[2];
  for (int r = 0; r < 2; ++r) {
    dwte[r] = cast_to<float>(random_vector(Vd * Cd, 44, 2));
    dwpe[r] = cast_to<float>(random_vector(Td * Cd, 44, 3));
    encoder_backward_cpu<float>(dwte[r].data(), dwpe[r].data(), dout.data(), tokens.data(), Bd, Td,
                                Cd, Vd);
  }
  EXPECT_EQ(0, std::memcmp(dwte[0].data(), dwte[1].data(), dwte[0].size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(dwpe[0].data(), dwpe[1].data(), dwpe[0].size() * sizeof(float)));
}

TEST(Encoder, RejectsTokenOutsideVocabularyBeforeWritingAnything) {
  const auto wte = random_vector(V * C, 45, 0);
  const auto wpe = random_vector(kWpeRows * C, 45, 1);
  // The bad id sits last, so a kernel that checked while it worked would already have written.
  for (const int32_t bad : {V, -1, V + 1000}) {
    SCOPED_TRACE("bad id " + std::to_string(bad));
    auto tokens = test_tokens();
    const int pos = B * Tn - 1;
    tokens[pos] = bad;
    auto out = poisoned<double>(B * Tn * C);
    expect_runtime_failure_mentioning(
        [&] {
          encoder_forward_cpu<double>(out.data(), tokens.data(), wte.data(), wpe.data(), B, Tn, C,
                                      V);
        },
        {"id " + std::to_string(bad), "position " + std::to_string(pos), std::to_string(V)});
    for (double x : out) {
      ASSERT_TRUE(std::isnan(x)) << "forward wrote before throwing";
    }
  }
}

TEST(Encoder, BackwardRejectsTokenOutsideVocabularyBeforeWritingAnything) {
  const auto dout = random_vector(B * Tn * C, 46, 0);
  for (const int32_t bad : {V, -1}) {
    SCOPED_TRACE("bad id " + std::to_string(bad));
    auto tokens = test_tokens();
    const int pos = B * Tn - 2;
    tokens[pos] = bad;
    const auto dwte0 = random_vector(V * C, 46, 1);
    const auto dwpe0 = random_vector(kWpeRows * C, 46, 2);
    auto dwte = dwte0, dwpe = dwpe0;
    expect_runtime_failure_mentioning(
        [&] {
          encoder_backward_cpu<double>(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, Tn,
                                       C, V);
        },
        {"id " + std::to_string(bad), "position " + std::to_string(pos)});
    EXPECT_EQ(dwte, dwte0);
    EXPECT_EQ(dwpe, dwpe0);
  }
}

}  // namespace
}  // namespace dpt::kernels::test
