// linear_forward_cpu / linear_backward_cpu: naive reference, finite differences, float vs double.
#include "kernels/linear.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "kernel_test_util.h"

namespace dpt::kernels::test {
namespace {

constexpr int N = 5, C = 7, OC = 13;

std::vector<double> naive_linear(const std::vector<double>& inp, const std::vector<double>& w,
                                 const std::vector<double>* bias) {
  std::vector<double> out(N * OC);
  for (int n = 0; n < N; ++n) {
    for (int o = 0; o < OC; ++o) {
      double s = bias ? (*bias)[o] : 0.0;
      for (int c = 0; c < C; ++c) {
        s += inp[n * C + c] * w[o * C + c];
      }
      out[n * OC + o] = s;
    }
  }
  return out;
}

TEST(Linear, ForwardMatchesNaiveReferenceWithAndWithoutBias) {
  const auto inp = random_vector(N * C, 10, 0);
  const auto w = random_vector(OC * C, 10, 1);
  const auto b = random_vector(OC, 10, 2);
  auto out = poisoned<double>(N * OC);
  linear_forward_cpu<double>(out.data(), inp.data(), w.data(), b.data(), N, C, OC);
  expect_all_close(out, naive_linear(inp, w, &b), 1e-13, 1e-13, "with bias");
  out = poisoned<double>(N * OC);
  linear_forward_cpu<double>(out.data(), inp.data(), w.data(), nullptr, N, C, OC);
  expect_all_close(out, naive_linear(inp, w, nullptr), 1e-13, 1e-13, "without bias");
}

TEST(Linear, ForwardFloatAgreesWithDouble) {
  const auto inp = random_vector(N * C, 11, 0);
  const auto w = random_vector(OC * C, 11, 1);
  const auto b = random_vector(OC, 11, 2);
  std::vector<double> d(N * OC);
  linear_forward_cpu<double>(d.data(), inp.data(), w.data(), b.data(), N, C, OC);
  const auto inpf = cast_to<float>(inp), wf = cast_to<float>(w), bf = cast_to<float>(b);
  auto f = poisoned<float>(N * OC);
  linear_forward_cpu<float>(f.data(), inpf.data(), wf.data(), bf.data(), N, C, OC);
  expect_all_close(to_double(f), d, 1e-5, 1e-5, "linear float vs double");
}

TEST(Linear, BackwardMatchesFiniteDifferencesAndAddsIntoGradients) {
  auto inp = random_vector(N * C, 12, 0);
  auto w = random_vector(OC * C, 12, 1);
  auto b = random_vector(OC, 12, 2);
  const auto R = random_vector(N * OC, 12, 3);
  std::vector<double> out(N * OC);
  const auto objective = [&] {
    linear_forward_cpu<double>(out.data(), inp.data(), w.data(), b.data(), N, C, OC);
    return dot(out, R);
  };
  // Gradient buffers start from random values: backward must add, not overwrite.
  const auto dinp0 = random_vector(N * C, 12, 4);
  const auto dw0 = random_vector(OC * C, 12, 5);
  const auto db0 = random_vector(OC, 12, 6);
  auto dinp = dinp0, dw = dw0, db = db0;
  linear_backward_cpu<double>(dinp.data(), dw.data(), db.data(), R.data(), inp.data(), w.data(), N,
                              C, OC);
  expect_all_close(minus(dinp, dinp0), numeric_gradient(inp, objective), kGradRtol, kGradAtol,
                   "dinp");
  expect_all_close(minus(dw, dw0), numeric_gradient(w, objective), kGradRtol, kGradAtol, "dweight");
  expect_all_close(minus(db, db0), numeric_gradient(b, objective), kGradRtol, kGradAtol, "dbias");
}

TEST(Linear, BackwardWithNullBiasAndNullInputGradientStillFillsWeightGradient) {
  const auto inp = random_vector(N * C, 13, 0);
  auto w = random_vector(OC * C, 13, 1);
  const auto R = random_vector(N * OC, 13, 2);
  std::vector<double> out(N * OC);
  const auto objective = [&] {
    linear_forward_cpu<double>(out.data(), inp.data(), w.data(), nullptr, N, C, OC);
    return dot(out, R);
  };
  const auto dw0 = random_vector(OC * C, 13, 3);
  auto dw = dw0;
  linear_backward_cpu<double>(nullptr, dw.data(), nullptr, R.data(), inp.data(), w.data(), N, C,
                              OC);
  expect_all_close(minus(dw, dw0), numeric_gradient(w, objective), kGradRtol, kGradAtol, "dweight");
}

// [Gradient write]: GradInput::write gives the bits of zeroing and adding, and reads nothing of
// the old dinp (NaN there stays out of the result); the weight and bias gradients still add.
TEST(Linear, BackwardThatWritesTheInputGradientEqualsZeroingAndAdding) {
  for (const auto& [n, c, oc] : {std::tuple{5, 7, 13}, std::tuple{67, 33, 97}}) {
    const std::vector<float> dout = cast_to<float>(random_vector(n * oc, 41, 1));
    const std::vector<float> inp = cast_to<float>(random_vector(n * c, 41, 2));
    const std::vector<float> w = cast_to<float>(random_vector(oc * c, 41, 3));
    const std::vector<float> dw0 = cast_to<float>(random_vector(oc * c, 41, 4));
    const std::vector<float> db0 = cast_to<float>(random_vector(oc, 41, 5));
    std::vector<float> dinp_add(n * c, 0.0f), dw_add = dw0, db_add = db0;
    linear_backward_cpu<float>(dinp_add.data(), dw_add.data(), db_add.data(), dout.data(),
                               inp.data(), w.data(), n, c, oc);
    std::vector<float> dinp_write = poisoned<float>(n * c), dw_write = dw0, db_write = db0;
    linear_backward_cpu<float>(dinp_write.data(), dw_write.data(), db_write.data(), dout.data(),
                               inp.data(), w.data(), n, c, oc, GradInput::write);
    EXPECT_EQ(dinp_write, dinp_add);
    EXPECT_EQ(dw_write, dw_add);
    EXPECT_EQ(db_write, db_add);
  }
}

// [Padded vocabulary]: out and dout rows ld apart give the unpadded results, the padding of out
// is never written and that of dout (NaN) never read.
TEST(Linear, PaddedOutputRowsGiveTheUnpaddedResults) {
  constexpr int ld = 64;
  const auto inp = random_vector(N * C, 42, 1), w = random_vector(OC * C, 42, 2),
             b = random_vector(OC, 42, 3), dout = random_vector(N * OC, 42, 4);
  std::vector<double> out(N * OC), dinp(N * C, 0.0), dw(OC * C, 0.0), db(OC, 0.0);
  linear_forward_cpu<double>(out.data(), inp.data(), w.data(), b.data(), N, C, OC);
  linear_backward_cpu<double>(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(),
                              N, C, OC);
  const std::vector<double> pdout = padded_rows(dout, N, OC, ld, std::nan(""));
  std::vector<double> pout(N * ld, -7.0), pdinp(N * C, 0.0), pdw(OC * C, 0.0), pdb(OC, 0.0);
  linear_forward_cpu<double>(pout.data(), inp.data(), w.data(), b.data(), N, C, OC, ld);
  linear_backward_cpu<double>(pdinp.data(), pdw.data(), pdb.data(), pdout.data(), inp.data(),
                              w.data(), N, C, OC, GradInput::add, ld);
  for (int n = 0; n < N; ++n) {
    for (int o = 0; o < ld; ++o) {
      if (o < OC) {
        ASSERT_EQ(pout[n * ld + o], out[n * OC + o]) << "row " << n << " column " << o;
      } else {
        ASSERT_EQ(pout[n * ld + o], -7.0) << "padding written, row " << n << " column " << o;
      }
    }
  }
  EXPECT_EQ(pdinp, dinp);
  EXPECT_EQ(pdw, dw);
  EXPECT_EQ(pdb, db);
}

}  // namespace
}  // namespace dpt::kernels::test
