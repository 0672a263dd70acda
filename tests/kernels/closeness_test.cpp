// [Closeness]: the measure the CUDA kernel tests bound (tests/kernels/cuda_test_util.h), held
// here on the CPU: bf16 rounding passes, a few wrong elements that the norm would let through
// do not.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernel_test_util.h"

namespace dpt::kernels::test {
namespace {

constexpr double kBf16Tol = 1e-2;  // cuda_test_util.h's tolerance<bf16>()

// x rounded to bfloat16 (round to nearest even on the top 16 bits of the float).
double round_bf16(double x) {
  float f = static_cast<float>(x);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

bool passes(const Closeness& c, double tol) {
  return c.nonfinite == 0 && c.norm_rel <= tol && c.worst <= kElementTolFactor * tol;
}

TEST(Closeness, Bf16RoundingOfEveryElementPasses) {
  const std::vector<double> want = random_vector(65541, 31, 1);
  std::vector<double> got(want.size());
  for (size_t i = 0; i < want.size(); ++i)
    got[i] = round_bf16(want[i]);
  const Closeness c = closeness(got, want);
  EXPECT_LE(c.worst, 1.0 / 256) << "bf16 keeps 8 significant bits";
  EXPECT_TRUE(passes(c, kBf16Tol));
}

TEST(Closeness, FiveCorruptedElementsFailThoughTheNormAlonePasses) {
  const std::vector<double> want = random_vector(65541, 31, 2);
  std::vector<double> got(want.size());
  for (size_t i = 0; i < want.size(); ++i)
    got[i] = round_bf16(want[i]);
  for (size_t i = want.size() - 5; i < want.size(); ++i)
    got[i] = want[i] + 1.0;  // five tail elements wrong by the tensor's typical size (rms 1)
  const Closeness c = closeness(got, want);
  EXPECT_LE(c.norm_rel, kBf16Tol) << "the norm-relative bound alone would pass this";
  EXPECT_FALSE(passes(c, kBf16Tol));
  EXPECT_GE(c.worst_at, want.size() - 5);
  // One corrupted element is enough.
  got.assign(want.begin(), want.end());
  got[12345] = want[12345] + 0.5;
  EXPECT_FALSE(passes(closeness(got, want), kBf16Tol));
}

TEST(Closeness, AnElementNearZeroIsMeasuredAgainstTheTensorsScale) {
  // A sum that cancels to nearly zero: its error is set by the size of its terms, which the
  // tensor's rms stands for, not by its own size.
  std::vector<double> want = random_vector(1000, 31, 3);
  want[7] = 1e-9;
  std::vector<double> got = want;
  got[7] = 1e-9 + 1e-3;
  EXPECT_TRUE(passes(closeness(got, want), kBf16Tol));
}

TEST(Closeness, NonFiniteElementsAreCountedAndFail) {
  const std::vector<double> want = random_vector(100, 31, 4);
  std::vector<double> got = want;
  got[42] = std::nan("");
  got[43] = INFINITY;
  const Closeness c = closeness(got, want);
  EXPECT_EQ(c.nonfinite, 2u);
  EXPECT_EQ(c.first_nonfinite, 42u);
  EXPECT_FALSE(passes(c, kBf16Tol));
}

}  // namespace
}  // namespace dpt::kernels::test
