// [Vector exp]: exp_vec against double exp over float's whole finite range of exp, and at the
// edges (saturation, NaN).
#include "kernels/vec_exp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace dpt::kernels::test {
namespace {

TEST(VectorExp, WithinThreeUlpOfDoubleExpOverItsRange) {
  double worst = 0.0, worst_x = 0.0;
  // Every 2^-12 from -87.33 to 88.37: about 720,000 points, each binade of results.
  for (double x = -87.33; x <= 88.37; x += 1.0 / 4096) {
    const float xf = static_cast<float>(x);
    const double want = std::exp(static_cast<double>(xf));
    const double rel = std::fabs(exp_vec(xf) - want) / want;
    if (rel > worst) {
      worst = rel;
      worst_x = xf;
    }
  }
  EXPECT_LE(worst, 3e-7) << "at x = " << worst_x;  // float's ulp is 1.19e-7 relative at most
  EXPECT_EQ(exp_vec(0.0f), 1.0f);
  EXPECT_EQ(exp_vec(-0.0f), 1.0f);
}

TEST(VectorExp, SaturatesOutsideItsRangeAndNanStaysNan) {
  const float inf = std::numeric_limits<float>::infinity();
  const float top = exp_vec(88.37f), bottom = exp_vec(-87.33f);
  EXPECT_GT(top, 2e38f);
  EXPECT_LT(bottom, 1.3e-38f);
  EXPECT_GT(bottom, 0.0f);
  for (const float x : {88.5f, 1e30f, inf})
    EXPECT_EQ(exp_vec(x), top) << x;
  for (const float x : {-88.0f, -1e30f, -inf})
    EXPECT_EQ(exp_vec(x), bottom) << x;
  EXPECT_TRUE(std::isnan(exp_vec(std::nanf(""))));
  // What the callers make of the ends: 1 / (1 + e) is 0 and 1 to float's precision.
  EXPECT_LT(1.0f / (1.0f + exp_vec(inf)), 1e-38f);
  EXPECT_EQ(1.0f / (1.0f + exp_vec(-inf)), 1.0f);
  EXPECT_EQ(exp_of<double>(1.0), std::exp(1.0));  // double keeps libm's
}

}  // namespace
}  // namespace dpt::kernels::test
