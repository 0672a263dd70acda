// [Attention rollout] on hand-built attention matrices against a direct computation of
// W_l = rownorm(0.5 mean_h A_l + 0.5 I) and W_2 W_1, and the cases whose answer is known:
// attention to oneself only leaves the identity; rows stay stochastic.
#include <gtest/gtest.h>

#include <vector>

#include "trainer/attention_maps.h"

namespace dpt::trainer {
namespace {

using Mat = std::vector<std::vector<double>>;

Mat mul(const Mat& a, const Mat& b) {
  const size_t n = a.size();
  Mat c(n, std::vector<double>(n, 0.0));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j)
      for (size_t k = 0; k < n; ++k)
        c[i][j] += a[i][k] * b[k][j];
  return c;
}

TEST(AttentionRollout, TwoLayersTwoHeadsMatchTheDirectProduct) {
  // Layer 1: head 0 attends to the previous position, head 1 uniformly over the past.
  // Layer 2: head 0 to position 0, head 1 to itself.
  const Mat l1h0 = {{1, 0, 0}, {1, 0, 0}, {0, 1, 0}};
  const Mat l1h1 = {{1, 0, 0}, {0.5, 0.5, 0}, {1. / 3, 1. / 3, 1. / 3}};
  const Mat l2h0 = {{1, 0, 0}, {1, 0, 0}, {1, 0, 0}};
  const Mat l2h1 = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
  std::vector<float> att;
  for (const Mat* m : {&l1h0, &l1h1, &l2h0, &l2h1})
    for (const auto& row : *m)
      for (double v : row)
        att.push_back(static_cast<float>(v));
  auto layer = [](const Mat& a, const Mat& b) {
    Mat w(3, std::vector<double>(3));
    for (int i = 0; i < 3; ++i) {
      double s = 0;
      for (int j = 0; j < 3; ++j)
        s += w[i][j] = 0.5 * (a[i][j] + b[i][j]) / 2 + (i == j ? 0.5 : 0.0);
      for (int j = 0; j < 3; ++j)
        w[i][j] /= s;
    }
    return w;
  };
  const Mat want = mul(layer(l2h0, l2h1), layer(l1h0, l1h1));
  const std::vector<double> got = attention_rollout(att, 2, 2, 3);
  for (int i = 0; i < 3; ++i) {
    double row = 0;
    for (int j = 0; j < 3; ++j) {
      EXPECT_NEAR(got[i * 3 + j], want[i][j], 1e-7) << i << "," << j;
      row += got[i * 3 + j];
    }
    EXPECT_NEAR(row, 1.0, 1e-7);
  }
  // Position 2's output drew on position 0 through layer 2's head 0 and layer 1's heads.
  EXPECT_GT(got[2 * 3 + 0], 0.2);
}

TEST(AttentionRollout, AttendingToOneselfOnlyLeavesTheIdentity) {
  const int L = 3, NH = 2, T = 4;
  std::vector<float> att(static_cast<size_t>(L) * NH * T * T, 0.0f);
  for (int m = 0; m < L * NH; ++m)
    for (int i = 0; i < T; ++i)
      att[(static_cast<size_t>(m) * T + i) * T + i] = 1.0f;
  const auto r = attention_rollout(att, L, NH, T);
  for (int i = 0; i < T; ++i)
    for (int j = 0; j < T; ++j)
      EXPECT_DOUBLE_EQ(r[i * T + j], i == j ? 1.0 : 0.0);
}

}  // namespace
}  // namespace dpt::trainer
