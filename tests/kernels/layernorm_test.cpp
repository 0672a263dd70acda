// layernorm_forward_cpu / layernorm_backward_cpu: normalization, naive reference, finite
// differences, float vs double, determinism; residual_layernorm_forward_cpu against the two calls
// it stands for.
#include "kernels/layernorm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/residual.h"

namespace dpt::kernels::test {
namespace {

constexpr int N = 7, C = 11;

TEST(LayerNorm, RowsHaveMeanZeroAndUnitVarianceBeforeAffine) {
  // Offset and scaled rows: the statistics must not depend on where the row sits.
  const auto inp = random_vector(N * C, 20, 0, 3.0);
  std::vector<double> shifted(inp);
  for (double& x : shifted) {
    x += 5.0;
  }
  const std::vector<double> ones(C, 1.0), zeros(C, 0.0);
  auto out = poisoned<double>(N * C);
  auto mean = poisoned<double>(N), rstd = poisoned<double>(N);
  layernorm_forward_cpu<double>(out.data(), mean.data(), rstd.data(), shifted.data(), ones.data(),
                                zeros.data(), N, C);
  for (int n = 0; n < N; ++n) {
    double m = 0.0, var = 0.0, in_m = 0.0, in_var = 0.0;
    for (int c = 0; c < C; ++c) {
      in_m += shifted[n * C + c] / C;
    }
    for (int c = 0; c < C; ++c) {
      in_var += (shifted[n * C + c] - in_m) * (shifted[n * C + c] - in_m) / C;
    }
    for (int c = 0; c < C; ++c) {
      m += out[n * C + c] / C;
    }
    for (int c = 0; c < C; ++c) {
      var += (out[n * C + c] - m) * (out[n * C + c] - m) / C;
    }
    EXPECT_NEAR(m, 0.0, 1e-13) << "row " << n;
    // Variance 1 up to eps: var_out = var / (var + eps).
    EXPECT_NEAR(var, in_var / (in_var + kLayerNormEps), 1e-12) << "row " << n;
    EXPECT_NEAR(var, 1.0, 1e-5) << "row " << n;
    EXPECT_NEAR(mean[n], in_m, 1e-12) << "row " << n;
    EXPECT_NEAR(rstd[n], 1.0 / std::sqrt(in_var + kLayerNormEps), 1e-12) << "row " << n;
  }
}

TEST(LayerNorm, ForwardMatchesNaiveReferenceWithAffine) {
  const auto inp = random_vector(N * C, 21, 0);
  const auto w = random_vector(C, 21, 1);
  const auto b = random_vector(C, 21, 2);
  auto out = poisoned<double>(N * C);
  auto mean = poisoned<double>(N), rstd = poisoned<double>(N);
  layernorm_forward_cpu<double>(out.data(), mean.data(), rstd.data(), inp.data(), w.data(),
                                b.data(), N, C);
  std::vector<double> want(N * C);
  for (int n = 0; n < N; ++n) {
    double m = 0.0, var = 0.0;
    for (int c = 0; c < C; ++c) {
      m += inp[n * C + c];
    }
    m /= C;
    for (int c = 0; c < C; ++c) {
      var += (inp[n * C + c] - m) * (inp[n * C + c] - m);
    }
    var /= C;
    for (int c = 0; c < C; ++c) {
      want[n * C + c] = (inp[n * C + c] - m) / std::sqrt(var + kLayerNormEps) * w[c] + b[c];
    }
  }
  expect_all_close(out, want, 1e-12, 1e-13, "layernorm out");
}

TEST(LayerNorm, ForwardFloatAgreesWithDouble) {
  const auto inp = random_vector(N * C, 22, 0, 2.0);
  const auto w = random_vector(C, 22, 1);
  const auto b = random_vector(C, 22, 2);
  std::vector<double> d(N * C), dm(N), dr(N);
  layernorm_forward_cpu<double>(d.data(), dm.data(), dr.data(), inp.data(), w.data(), b.data(), N,
                                C);
  const auto inpf = cast_to<float>(inp), wf = cast_to<float>(w), bf = cast_to<float>(b);
  auto f = poisoned<float>(N * C), fm = poisoned<float>(N), fr = poisoned<float>(N);
  layernorm_forward_cpu<float>(f.data(), fm.data(), fr.data(), inpf.data(), wf.data(), bf.data(), N,
                               C);
  expect_all_close(to_double(f), d, 1e-5, 1e-6, "out");
  expect_all_close(to_double(fm), dm, 1e-6, 1e-7, "mean");
  expect_all_close(to_double(fr), dr, 1e-6, 1e-7, "rstd");
}

TEST(LayerNorm, BackwardMatchesFiniteDifferencesAndAddsIntoGradients) {
  auto inp = random_vector(N * C, 23, 0);
  auto w = random_vector(C, 23, 1);
  auto b = random_vector(C, 23, 2);
  const auto R = random_vector(N * C, 23, 3);
  std::vector<double> out(N * C), mean(N), rstd(N);
  const auto objective = [&] {
    layernorm_forward_cpu<double>(out.data(), mean.data(), rstd.data(), inp.data(), w.data(),
                                  b.data(), N, C);
    return dot(out, R);
  };
  objective();  // mean and rstd of the unperturbed input, for the backward pass
  const auto saved_mean = mean, saved_rstd = rstd;
  const auto dinp0 = random_vector(N * C, 23, 4);
  const auto dw0 = random_vector(C, 23, 5);
  const auto db0 = random_vector(C, 23, 6);
  auto dinp = dinp0, dw = dw0, db = db0;
  layernorm_backward_cpu<double>(dinp.data(), dw.data(), db.data(), R.data(), inp.data(), w.data(),
                                 saved_mean.data(), saved_rstd.data(), N, C);
  expect_all_close(minus(dinp, dinp0), numeric_gradient(inp, objective), kGradRtol, kGradAtol,
                   "dinp");
  expect_all_close(minus(dw, dw0), numeric_gradient(w, objective), kGradRtol, kGradAtol, "dweight");
  expect_all_close(minus(db, db0), numeric_gradient(b, objective), kGradRtol, kGradAtol, "dbias");
}

TEST(LayerNorm, BackwardIsBitwiseDeterministicWithTwoThreads) {
  ScopedCpuThreads threads(2);
  // Several channel blocks and more rows than threads, so the work really is split.
  constexpr int Nd = 37, Cd = 100;
  const auto inp = cast_to<float>(random_vector(Nd * Cd, 24, 0));
  const auto w = cast_to<float>(random_vector(Cd, 24, 1));
  const auto b = cast_to<float>(random_vector(Cd, 24, 2));
  const auto R = cast_to<float>(random_vector(Nd * Cd, 24, 3));
  std::vector<float> out(Nd * Cd), mean(Nd), rstd(Nd);
  layernorm_forward_cpu<float>(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(),
                               Nd, Cd);
  std::vector<float> grads[2][3];
  for (auto& run : grads) {
    run[0] = cast_to<float>(random_vector(Nd * Cd, 24, 4));
    run[1] = cast_to<float>(random_vector(Cd, 24, 5));
    run[2] = cast_to<float>(random_vector(Cd, 24, 6));
    layernorm_backward_cpu<float>(run[0].data(), run[1].data(), run[2].data(), R.data(), inp.data(),
                                  w.data(), mean.data(), rstd.data(), Nd, Cd);
  }
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(
        0, std::memcmp(grads[0][k].data(), grads[1][k].data(), grads[0][k].size() * sizeof(float)))
        << "gradient " << k << " differs between two runs";
  }
}

// [Residual LayerNorm]: the twin writes what residual_forward_cpu then layernorm_forward_cpu
// write, bit for bit, in all four outputs (every one poisoned first).
template <typename T>
void expect_residual_twin_is_residual_then_layernorm(int Nr, int Cr, uint64_t seed) {
  const size_t n = static_cast<size_t>(Nr) * Cr;
  const auto a = cast_to<T>(random_vector(n, seed, 0, 2.0));
  const auto b = cast_to<T>(random_vector(n, seed, 1));
  const auto w = cast_to<T>(random_vector(Cr, seed, 2));
  const auto bias = cast_to<T>(random_vector(Cr, seed, 3));
  auto want_res = poisoned<T>(n), want_ln = poisoned<T>(n);
  auto want_mean = poisoned<T>(Nr), want_rstd = poisoned<T>(Nr);
  residual_forward_cpu<T>(want_res.data(), a.data(), b.data(), n);
  layernorm_forward_cpu<T>(want_ln.data(), want_mean.data(), want_rstd.data(), want_res.data(),
                           w.data(), bias.data(), Nr, Cr);
  auto res = poisoned<T>(n), ln = poisoned<T>(n);
  auto mean = poisoned<T>(Nr), rstd = poisoned<T>(Nr);
  residual_layernorm_forward_cpu<T>(res.data(), ln.data(), mean.data(), rstd.data(), a.data(),
                                    b.data(), w.data(), bias.data(), Nr, Cr);
  const std::string shape = " N=" + std::to_string(Nr) + " C=" + std::to_string(Cr);
  // NaN poison left anywhere would compare equal to itself bit for bit: check it is gone.
  for (const auto* v : {&res, &ln, &mean, &rstd}) {
    ASSERT_TRUE(std::all_of(v->begin(), v->end(), [](T x) { return std::isfinite(x); })) << shape;
  }
  EXPECT_EQ(0, std::memcmp(res.data(), want_res.data(), n * sizeof(T))) << "res_out" << shape;
  EXPECT_EQ(0, std::memcmp(ln.data(), want_ln.data(), n * sizeof(T))) << "ln_out" << shape;
  EXPECT_EQ(0, std::memcmp(mean.data(), want_mean.data(), Nr * sizeof(T))) << "mean" << shape;
  EXPECT_EQ(0, std::memcmp(rstd.data(), want_rstd.data(), Nr * sizeof(T))) << "rstd" << shape;
}

TEST(ResidualLayerNorm, TwinIsResidualThenLayerNormBitwiseFloat) {
  for (const auto& [Nr, Cr] : {std::pair{1, 1}, {5, 7}, {N, C}, {67, 13}, {3, 768}}) {
    expect_residual_twin_is_residual_then_layernorm<float>(Nr, Cr, 25);
  }
}

TEST(ResidualLayerNorm, TwinIsResidualThenLayerNormBitwiseDouble) {
  for (const auto& [Nr, Cr] : {std::pair{1, 1}, {5, 7}, {N, C}, {67, 13}, {3, 768}}) {
    expect_residual_twin_is_residual_then_layernorm<double>(Nr, Cr, 26);
  }
}

// [LayerNorm slices]: the CUDA backward's scratch, sized once for the largest batch, must hold
// the slices of every smaller one (a smaller batch can need more slices: the regression).
TEST(LayerNormSlices, ScratchForTheLargestBatchCoversEverySmallerBatch) {
  EXPECT_EQ(layernorm_backward_slices(41 * 100).count, 242);
  EXPECT_EQ(layernorm_backward_slices(39 * 100).count, 244);
  EXPECT_GE(layernorm_backward_scratch_floats(41 * 100, 8), 244u * 2 * 8);
  int most = 0;  // the most slices any row count up to N needs
  for (int N = 1; N <= 200000; ++N) {
    const LayerNormSlices p = layernorm_backward_slices(N);
    ASSERT_GE(static_cast<int64_t>(p.rows) * p.count, N) << N;        // every row in a slice
    ASSERT_LT(static_cast<int64_t>(p.rows) * (p.count - 1), N) << N;  // no empty slice
    ASSERT_LE(p.count, kLayerNormMaxSlices) << N;
    most = std::max(most, p.count);
    ASSERT_GE(layernorm_backward_scratch_floats(N, 3), static_cast<size_t>(most) * 2 * 3) << N;
  }
  EXPECT_EQ(layernorm_backward_scratch_floats(0, 3), 0u);
}

}  // namespace
}  // namespace dpt::kernels::test
