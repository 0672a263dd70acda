// adamw_update_cpu against a hand-written scalar AdamW, and sum_squares_cpu against a plain sum.
#include "kernels/adamw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernel_test_util.h"

namespace dpt::kernels::test {
namespace {

constexpr size_t kN = 29;

// One element, written out as the paper has it (decoupled decay on the pre-update weight).
struct ScalarAdamW {
  double param, m = 0.0, v = 0.0;
  void step(double grad, const AdamWParams& p) {
    const double g = grad * p.grad_scale;
    m = p.beta1 * m + (1.0 - p.beta1) * g;
    v = p.beta2 * v + (1.0 - p.beta2) * g * g;
    const double mhat = m / (1.0 - std::pow(p.beta1, p.step));
    const double vhat = v / (1.0 - std::pow(p.beta2, p.step));
    param = param - p.lr * (mhat / (std::sqrt(vhat) + p.eps) + p.weight_decay * param);
  }
};

template <typename T>
void check_three_steps_against_scalar(double weight_decay, double rtol) {
  const auto param0 = random_vector(kN, 70, 0);
  std::vector<ScalarAdamW> ref(kN);
  for (size_t i = 0; i < kN; ++i) {
    ref[i].param = param0[i];
  }
  auto param = cast_to<T>(param0);
  std::vector<T> m(kN, T(0)), v(kN, T(0));
  for (long step = 1; step <= 3; ++step) {
    // A fresh gradient each step, so bias correction of both moments is exercised.
    const auto grad = random_vector(kN, 70, static_cast<uint64_t>(step), 0.5);
    const AdamWParams p{1e-2, 0.9, 0.95, 1e-8, weight_decay, 0.75, step};
    const auto gradT = cast_to<T>(grad);
    adamw_update_cpu<T>(param.data(), m.data(), v.data(), gradT.data(), kN, p);
    std::vector<double> want_param(kN), want_m(kN), want_v(kN);
    for (size_t i = 0; i < kN; ++i) {
      ref[i].step(static_cast<double>(gradT[i]), p);
      want_param[i] = ref[i].param;
      want_m[i] = ref[i].m;
      want_v[i] = ref[i].v;
    }
    SCOPED_TRACE(::testing::Message() << "step " << step << " weight_decay " << weight_decay);
    expect_all_close(to_double(param), want_param, rtol, rtol, "param");
    expect_all_close(to_double(m), want_m, rtol, rtol * 1e-2, "m");
    expect_all_close(to_double(v), want_v, rtol, rtol * 1e-3, "v");
  }
}

TEST(AdamW, ThreeStepsMatchScalarUpdateWithoutWeightDecay) {
  check_three_steps_against_scalar<double>(0.0, 1e-13);
}

TEST(AdamW, ThreeStepsMatchScalarUpdateWithWeightDecay) {
  check_three_steps_against_scalar<double>(0.1, 1e-13);
}

TEST(AdamW, FloatThreeStepsAgreeWithDoubleScalarUpdate) {
  check_three_steps_against_scalar<float>(0.1, 1e-6);
}

TEST(AdamW, RejectsStepZero) {
  std::vector<double> x(3, 1.0), m(3, 0.0), v(3, 0.0), g(3, 1.0);
  const AdamWParams p{1e-3, 0.9, 0.95, 1e-8, 0.0, 1.0, 0};
  EXPECT_THROW(adamw_update_cpu<double>(x.data(), m.data(), v.data(), g.data(), 3, p),
               RuntimeFailure);
}

TEST(SumSquares, MatchesPlainSumForSizesAroundTheChunking) {
  for (const size_t n : {size_t{0}, size_t{1}, size_t{5}, size_t{63}, size_t{64}, size_t{65},
                         size_t{1000}, size_t{100003}}) {
    const auto x = random_vector(n, 71, n);
    long double want = 0.0L;
    for (double e : x) {
      want += static_cast<long double>(e) * e;
    }
    EXPECT_NEAR(sum_squares_cpu<double>(x.data(), n), static_cast<double>(want),
                1e-14 * static_cast<double>(want) + 1e-300)
        << "n=" << n;
    const auto xf = cast_to<float>(x);
    long double wantf = 0.0L;
    for (float e : xf) {
      wantf += static_cast<long double>(e) * e;
    }
    // Float input, double accumulation: as exact as the double case.
    EXPECT_NEAR(sum_squares_cpu<float>(xf.data(), n), static_cast<double>(wantf),
                1e-14 * static_cast<double>(wantf) + 1e-300)
        << "n=" << n;
  }
}

TEST(SumSquares, IsBitwiseDeterministicWithTwoThreads) {
  ScopedCpuThreads threads(2);
  const auto x = cast_to<float>(random_vector(100003, 72, 0));
  const double a = sum_squares_cpu<float>(x.data(), x.size());
  const double b = sum_squares_cpu<float>(x.data(), x.size());
  EXPECT_EQ(0, std::memcmp(&a, &b, sizeof(double)));
}

}  // namespace
}  // namespace dpt::kernels::test
