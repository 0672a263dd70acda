// The operations of the non-language tasks' inputs and heads: [Patches] against the index
// formula and as a permutation, [Positions] with and without a class token, [Pooling] (mean
// with and without lengths, the class token's row), [Mean squared error]; every
// backward against central finite differences in double, float against double.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/mse.h"
#include "kernels/patches.h"
#include "kernels/pooling.h"
#include "kernels/positions.h"

namespace dpt::kernels::test {
namespace {

struct PatchShape {
  int B, H, W, C, P;
  size_t n() const { return static_cast<size_t>(B) * H * W * C; }
};
// Odd sizes: non-square images, one channel and three, P = 1 (every pixel a patch) and P = H.
constexpr PatchShape kPatchShapes[] = {
    {2, 6, 9, 3, 3}, {1, 5, 5, 1, 5}, {3, 4, 6, 2, 2}, {1, 7, 3, 3, 1}};

TEST(Patches, ForwardPlacesEachPixelWhereTheFormulaSays) {
  for (const PatchShape& s : kPatchShapes) {
    const auto img = random_vector(s.n(), 90, 0);
    auto out = poisoned<double>(s.n());
    patches_forward_cpu<double>(out.data(), img.data(), s.B, s.H, s.W, s.C, s.P);
    const int gw = s.W / s.P, gh = s.H / s.P;
    for (int b = 0; b < s.B; ++b)
      for (int h = 0; h < s.H; ++h)
        for (int w = 0; w < s.W; ++w)
          for (int c = 0; c < s.C; ++c) {
            const size_t patch = (static_cast<size_t>(b) * gh + h / s.P) * gw + w / s.P;
            const size_t o =
                (patch * s.P + h % s.P) * s.P * s.C + static_cast<size_t>(w % s.P) * s.C + c;
            const size_t i = ((static_cast<size_t>(b) * s.H + h) * s.W + w) * s.C + c;
            ASSERT_EQ(out[o], img[i])
                << "b " << b << " h " << h << " w " << w << " c " << c << " P " << s.P;
          }
    const auto imgf = cast_to<float>(img);
    auto f = poisoned<float>(s.n());
    patches_forward_cpu<float>(f.data(), imgf.data(), s.B, s.H, s.W, s.C, s.P);
    expect_all_close(to_double(f), out, 1e-7, 0.0, "patches float vs double");
  }
}

TEST(Patches, BackwardMatchesFiniteDifferencesAndAddsIntoTheImageGradient) {
  for (const PatchShape& s : kPatchShapes) {
    auto img = random_vector(s.n(), 91, 0);
    const auto R = random_vector(s.n(), 91, 1);
    std::vector<double> out(s.n());
    const auto objective = [&] {
      patches_forward_cpu<double>(out.data(), img.data(), s.B, s.H, s.W, s.C, s.P);
      return dot(out, R);
    };
    const auto dimg0 = random_vector(s.n(), 91, 2);
    auto dimg = dimg0;
    patches_backward_cpu<double>(dimg.data(), R.data(), s.B, s.H, s.W, s.C, s.P);
    expect_all_close(minus(dimg, dimg0), numeric_gradient(img, objective), kGradRtol, kGradAtol,
                     "dimg");
  }
}

TEST(Patches, APatchSizeThatDoesNotDivideTheImageIsAUsageError) {
  std::vector<float> a(2 * 5 * 6 * 3), b(a.size());
  EXPECT_THROW(patches_forward_cpu<float>(b.data(), a.data(), 2, 5, 6, 3, 2), UsageError);
  EXPECT_THROW(patches_forward_cpu<float>(b.data(), a.data(), 2, 6, 5, 3, 3), UsageError);
  EXPECT_THROW(patches_backward_cpu<float>(a.data(), b.data(), 2, 6, 6, 3, 0), UsageError);
}

constexpr int kB = 3, kT = 7, kC = 5;
const std::vector<int32_t> kLengths = {7, 1, 4};

TEST(MeanPool, ForwardIsTheMeanOfTheValidPositionsOnly) {
  auto x = random_vector(static_cast<size_t>(kB) * kT * kC, 92, 0);
  for (const int32_t* len : {static_cast<const int32_t*>(nullptr), kLengths.data()}) {
    auto out = poisoned<double>(static_cast<size_t>(kB) * kC);
    mean_pool_forward_cpu<double>(out.data(), x.data(), len, kB, kT, kC);
    for (int b = 0; b < kB; ++b) {
      const int n = len ? len[b] : kT;
      for (int c = 0; c < kC; ++c) {
        double s = 0.0;
        for (int t = 0; t < n; ++t)
          s += x[(static_cast<size_t>(b) * kT + t) * kC + c];
        EXPECT_NEAR(out[b * kC + c], s / n, 1e-15) << "b " << b << " c " << c;
      }
    }
  }
  // Padding is invisible: changing the positions past a length changes nothing.
  std::vector<double> before(kB * kC), after(kB * kC);
  mean_pool_forward_cpu<double>(before.data(), x.data(), kLengths.data(), kB, kT, kC);
  for (int t = kLengths[1]; t < kT; ++t)
    x[(1 * kT + t) * kC] = 1e6;
  mean_pool_forward_cpu<double>(after.data(), x.data(), kLengths.data(), kB, kT, kC);
  EXPECT_EQ(before, after);
  const auto xf = cast_to<float>(x);
  std::vector<float> f(kB * kC);
  mean_pool_forward_cpu<float>(f.data(), xf.data(), kLengths.data(), kB, kT, kC);
  expect_all_close(to_double(f), after, 1e-6, 1e-6, "mean pool float vs double");
}

TEST(MeanPool, BackwardMatchesFiniteDifferencesAndLeavesPaddingAlone) {
  for (const int32_t* len : {static_cast<const int32_t*>(nullptr), kLengths.data()}) {
    auto x = random_vector(static_cast<size_t>(kB) * kT * kC, 93, 0);
    const auto R = random_vector(static_cast<size_t>(kB) * kC, 93, 1);
    std::vector<double> out(kB * kC);
    const auto objective = [&] {
      mean_pool_forward_cpu<double>(out.data(), x.data(), len, kB, kT, kC);
      return dot(out, R);
    };
    const auto dx0 = random_vector(x.size(), 93, 2);
    auto dx = dx0;
    mean_pool_backward_cpu<double>(dx.data(), R.data(), len, kB, kT, kC);
    const auto numeric = numeric_gradient(x, objective);
    expect_all_close(minus(dx, dx0), numeric, kGradRtol, kGradAtol, "dx");
    if (len) {
      EXPECT_EQ(dx[(1 * kT + 3) * kC], dx0[(1 * kT + 3) * kC]) << "padding position";
    }
  }
}

TEST(MeanPool, ALengthOutsideTheSequenceIsRefused) {
  std::vector<double> x(kB * kT * kC, 1.0), out(kB * kC);
  const std::vector<int32_t> zero = {7, 0, 4}, long_ = {7, 8, 4};
  EXPECT_THROW(mean_pool_forward_cpu<double>(out.data(), x.data(), zero.data(), kB, kT, kC),
               RuntimeFailure);
  EXPECT_THROW(mean_pool_backward_cpu<double>(x.data(), out.data(), long_.data(), kB, kT, kC),
               RuntimeFailure);
}

TEST(Mse, ForwardIsEachSamplesMeanSquaredError) {
  const int B = 4, K = 3;
  const auto pred = random_vector(B * K, 94, 0), target = random_vector(B * K, 94, 1);
  auto loss = poisoned<double>(B);
  mse_forward_cpu<double>(loss.data(), pred.data(), target.data(), B, K);
  for (int b = 0; b < B; ++b) {
    double s = 0.0;
    for (int k = 0; k < K; ++k)
      s += (pred[b * K + k] - target[b * K + k]) * (pred[b * K + k] - target[b * K + k]);
    EXPECT_NEAR(loss[b], s / K, 1e-15);
  }
  const auto pf = cast_to<float>(pred), tf = cast_to<float>(target);
  std::vector<float> lf(B);
  mse_forward_cpu<float>(lf.data(), pf.data(), tf.data(), B, K);
  expect_all_close(to_double(lf), loss, 1e-6, 1e-6, "mse float vs double");
}

TEST(Mse, BackwardMatchesFiniteDifferencesOfTheScaledBatchMean) {
  const int B = 5, K = 7;
  auto pred = random_vector(B * K, 95, 0);
  const auto target = random_vector(B * K, 95, 1);
  const double scale = 1.0 / B;
  std::vector<double> loss(B);
  const auto objective = [&] {
    mse_forward_cpu<double>(loss.data(), pred.data(), target.data(), B, K);
    double s = 0.0;
    for (double l : loss)
      s += scale * l;
    return s;
  };
  const auto d0 = random_vector(B * K, 95, 2);
  auto d = d0;
  mse_backward_cpu<double>(d.data(), pred.data(), target.data(), B, K, scale);
  expect_all_close(minus(d, d0), numeric_gradient(pred, objective), kGradRtol, kGradAtol, "dpred");
}

TEST(Positions, ForwardAddsThePositionToEachRowAndLeadsWithTheClassToken) {
  const int B = 2, Tin = 3, C = 5;
  const auto emb = random_vector(static_cast<size_t>(B) * Tin * C, 71, 0);
  const auto cls = random_vector(C, 71, 1);
  const auto wpe = random_vector(static_cast<size_t>(Tin + 1) * C, 71, 2);
  std::vector<double> x(static_cast<size_t>(B) * (Tin + 1) * C, std::nan(""));
  positions_forward_cpu<double>(x.data(), emb.data(), cls.data(), wpe.data(), B, Tin, C);
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < C; ++c) {
      EXPECT_EQ(x[(b * (Tin + 1)) * C + c], cls[c] + wpe[c]);
      for (int t = 0; t < Tin; ++t)
        EXPECT_EQ(x[(b * (Tin + 1) + t + 1) * C + c],
                  emb[(b * Tin + t) * C + c] + wpe[(t + 1) * C + c]);
    }
  std::vector<double> y(static_cast<size_t>(B) * Tin * C, std::nan(""));
  positions_forward_cpu<double>(y.data(), emb.data(), nullptr, wpe.data(), B, Tin, C);
  EXPECT_EQ(y[(1 * Tin + 2) * C + 4], emb[(1 * Tin + 2) * C + 4] + wpe[2 * C + 4]);
}

TEST(Positions, BackwardMatchesFiniteDifferencesForEveryInput) {
  const int B = 3, Tin = 4, C = 5;
  for (bool with_cls : {true, false}) {
    const int Tx = Tin + (with_cls ? 1 : 0);
    auto emb = random_vector(static_cast<size_t>(B) * Tin * C, 72, 0);
    auto cls = random_vector(C, 72, 1);
    auto wpe = random_vector(static_cast<size_t>(Tx) * C, 72, 2);
    const auto R = random_vector(static_cast<size_t>(B) * Tx * C, 72, 3);
    std::vector<double> x(R.size());
    const auto objective = [&] {
      positions_forward_cpu<double>(x.data(), emb.data(), with_cls ? cls.data() : nullptr,
                                    wpe.data(), B, Tin, C);
      return dot(x, R);
    };
    const auto demb0 = random_vector(emb.size(), 72, 4), dcls0 = random_vector(C, 72, 5),
               dwpe0 = random_vector(wpe.size(), 72, 6);
    auto demb = demb0, dcls = dcls0, dwpe = dwpe0;
    positions_backward_cpu<double>(demb.data(), with_cls ? dcls.data() : nullptr, dwpe.data(),
                                   R.data(), B, Tin, C);
    expect_all_close(minus(demb, demb0), numeric_gradient(emb, objective), kGradRtol, kGradAtol,
                     "demb");
    expect_all_close(minus(dwpe, dwpe0), numeric_gradient(wpe, objective), kGradRtol, kGradAtol,
                     "dwpe");
    if (with_cls) {
      expect_all_close(minus(dcls, dcls0), numeric_gradient(cls, objective), kGradRtol, kGradAtol,
                       "dcls");
    } else {
      EXPECT_EQ(dcls, dcls0);
    }
  }
}

TEST(ClsPool, ReadsEachSequencesFirstRowAndBackwardIsItsAdjoint) {
  const int B = 3, Tn = 4, C = 5;
  auto x = random_vector(static_cast<size_t>(B) * Tn * C, 73, 0);
  const auto R = random_vector(static_cast<size_t>(B) * C, 73, 1);
  std::vector<double> out(R.size(), std::nan(""));
  cls_pool_forward_cpu<double>(out.data(), x.data(), B, Tn, C);
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < C; ++c)
      EXPECT_EQ(out[b * C + c], x[(b * Tn) * C + c]);
  const auto objective = [&] {
    cls_pool_forward_cpu<double>(out.data(), x.data(), B, Tn, C);
    return dot(out, R);
  };
  const auto dx0 = random_vector(x.size(), 73, 2);
  auto dx = dx0;
  cls_pool_backward_cpu<double>(dx.data(), R.data(), B, Tn, C);
  expect_all_close(minus(dx, dx0), numeric_gradient(x, objective), kGradRtol, kGradAtol, "dx");
}

}  // namespace
}  // namespace dpt::kernels::test
