// gelu and residual kernels: the formula, finite differences, float vs double.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/gelu.h"
#include "kernels/residual.h"

namespace dpt::kernels::test {
namespace {

constexpr size_t kN = 37;

double gelu_formula(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

TEST(Gelu, ForwardMatchesTanhFormula) {
  auto inp = random_vector(kN, 60, 0, 3.0);
  inp[0] = 12.0;  // saturated tails
  inp[1] = -12.0;
  auto out = poisoned<double>(kN);
  gelu_forward_cpu<double>(out.data(), inp.data(), kN);
  std::vector<double> want(kN);
  for (size_t i = 0; i < kN; ++i) {
    want[i] = gelu_formula(inp[i]);
  }
  expect_all_close(out, want, 1e-15, 1e-15, "gelu");
}

TEST(Gelu, ForwardFloatAgreesWithDouble) {
  const auto inp = random_vector(kN, 61, 0, 3.0);
  std::vector<double> d(kN);
  gelu_forward_cpu<double>(d.data(), inp.data(), kN);
  const auto inpf = cast_to<float>(inp);
  auto f = poisoned<float>(kN);
  gelu_forward_cpu<float>(f.data(), inpf.data(), kN);
  expect_all_close(to_double(f), d, 1e-6, 1e-7, "gelu float vs double");
}

TEST(Gelu, BackwardMatchesFiniteDifferencesAndAddsIntoGradients) {
  auto inp = random_vector(kN, 62, 0, 2.0);
  const auto R = random_vector(kN, 62, 1);
  std::vector<double> out(kN);
  const auto objective = [&] {
    gelu_forward_cpu<double>(out.data(), inp.data(), kN);
    return dot(out, R);
  };
  const auto dinp0 = random_vector(kN, 62, 2);
  auto dinp = dinp0;
  gelu_backward_cpu<double>(dinp.data(), inp.data(), R.data(), kN);
  expect_all_close(minus(dinp, dinp0), numeric_gradient(inp, objective), kGradRtol, kGradAtol,
                   "dinp");
}

// [Gradient write]: the same bits as zeroing and adding; the old dinp (NaN) is not read.
TEST(Gelu, BackwardThatWritesEqualsZeroingAndAdding) {
  const std::vector<float> x = cast_to<float>(random_vector(kN * 11, 43, 1, 3.0));
  const std::vector<float> dout = cast_to<float>(random_vector(kN * 11, 43, 2));
  std::vector<float> add(x.size(), 0.0f), write = poisoned<float>(x.size());
  gelu_backward_cpu<float>(add.data(), x.data(), dout.data(), x.size());
  gelu_backward_cpu<float>(write.data(), x.data(), dout.data(), x.size(), GradInput::write);
  EXPECT_EQ(write, add);
}

TEST(Residual, ForwardIsElementwiseSumInFloatAndDouble) {
  const auto a = random_vector(kN, 63, 0), b = random_vector(kN, 63, 1);
  auto out = poisoned<double>(kN);
  residual_forward_cpu<double>(out.data(), a.data(), b.data(), kN);
  std::vector<double> want(kN);
  for (size_t i = 0; i < kN; ++i) {
    want[i] = a[i] + b[i];
  }
  expect_all_close(out, want, 0.0, 0.0, "residual double");
  const auto af = cast_to<float>(a), bf = cast_to<float>(b);
  auto f = poisoned<float>(kN);
  residual_forward_cpu<float>(f.data(), af.data(), bf.data(), kN);
  expect_all_close(to_double(f), want, 1e-7, 1e-7, "residual float vs double");
}

TEST(Residual, BackwardMatchesFiniteDifferencesAndAddsIntoBothGradients) {
  auto a = random_vector(kN, 64, 0), b = random_vector(kN, 64, 1);
  const auto R = random_vector(kN, 64, 2);
  std::vector<double> out(kN);
  const auto objective = [&] {
    residual_forward_cpu<double>(out.data(), a.data(), b.data(), kN);
    return dot(out, R);
  };
  const auto da0 = random_vector(kN, 64, 3), db0 = random_vector(kN, 64, 4);
  auto da = da0, db = db0;
  residual_backward_cpu<double>(da.data(), db.data(), R.data(), kN);
  expect_all_close(minus(da, da0), numeric_gradient(a, objective), kGradRtol, kGradAtol, "da");
  expect_all_close(minus(db, db0), numeric_gradient(b, objective), kGradRtol, kGradAtol, "db");
}

}  // namespace
}  // namespace dpt::kernels::test
