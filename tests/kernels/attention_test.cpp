// attention_forward_cpu / attention_backward_cpu: naive reference with the causal mask,
// finite differences, float vs double, determinism.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernel_test_util.h"

namespace dpt::kernels::test {
namespace {

constexpr int B = 2, Tn = 5, C = 12, NH = 3;
constexpr int hs = C / NH;

size_t qkv_elems() {
  return static_cast<size_t>(B) * Tn * 3 * C;
}
size_t out_elems() {
  return static_cast<size_t>(B) * Tn * C;
}
size_t att_elems() {
  return static_cast<size_t>(B) * NH * Tn * Tn;
}

// Straight from the definition in attention.h, one score at a time.
void naive_attention(std::vector<double>& out, std::vector<double>& att,
                     const std::vector<double>& qkv) {
  out.assign(out_elems(), 0.0);
  att.assign(att_elems(), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      for (int t = 0; t < Tn; ++t) {
        const double* q = &qkv[(b * Tn + t) * 3 * C + h * hs];
        std::vector<double> score(t + 1);
        double maxv = -INFINITY;
        for (int s = 0; s <= t; ++s) {
          const double* k = &qkv[(b * Tn + s) * 3 * C + C + h * hs];
          double d = 0.0;
          for (int i = 0; i < hs; ++i) {
            d += q[i] * k[i];
          }
          score[s] = d * scale;
          maxv = std::max(maxv, score[s]);
        }
        double sum = 0.0;
        for (int s = 0; s <= t; ++s) {
          sum += std::exp(score[s] - maxv);
        }
        for (int s = 0; s <= t; ++s) {
          const double p = std::exp(score[s] - maxv) / sum;
          att[((b * NH + h) * Tn + t) * Tn + s] = p;
          const double* v = &qkv[(b * Tn + s) * 3 * C + 2 * C + h * hs];
          for (int i = 0; i < hs; ++i) {
            out[(b * Tn + t) * C + h * hs + i] += p * v[i];
          }
        }
      }
    }
  }
}

TEST(Attention, ForwardMatchesNaiveReferenceWithExactCausalZerosAndUnitRows) {
  const auto qkv = random_vector(qkv_elems(), 30, 0, 1.5);
  auto out = poisoned<double>(out_elems());
  auto att = poisoned<double>(att_elems());
  attention_forward_cpu<double>(out.data(), att.data(), qkv.data(), B, Tn, C, NH);
  std::vector<double> want_out, want_att;
  naive_attention(want_out, want_att, qkv);
  expect_all_close(out, want_out, 1e-12, 1e-13, "out");
  expect_all_close(att, want_att, 1e-12, 1e-13, "att");
  for (int bh = 0; bh < B * NH; ++bh) {
    for (int t = 0; t < Tn; ++t) {
      const double* row = &att[(bh * Tn + t) * Tn];
      double sum = 0.0;
      for (int s = 0; s <= t; ++s) {
        sum += row[s];
      }
      EXPECT_NEAR(sum, 1.0, 1e-14) << "bh=" << bh << " t=" << t;
      for (int s = t + 1; s < Tn; ++s) {
        EXPECT_EQ(row[s], 0.0) << "future position bh=" << bh << " t=" << t << " s=" << s;
      }
    }
  }
}

TEST(Attention, ForwardFloatAgreesWithDouble) {
  const auto qkv = random_vector(qkv_elems(), 31, 0, 1.5);
  std::vector<double> d(out_elems()), datt(att_elems());
  attention_forward_cpu<double>(d.data(), datt.data(), qkv.data(), B, Tn, C, NH);
  const auto qkvf = cast_to<float>(qkv);
  auto f = poisoned<float>(out_elems()), fatt = poisoned<float>(att_elems());
  attention_forward_cpu<float>(f.data(), fatt.data(), qkvf.data(), B, Tn, C, NH);
  expect_all_close(to_double(f), d, 1e-5, 1e-6, "out");
  expect_all_close(to_double(fatt), datt, 1e-5, 1e-6, "att");
}

TEST(Attention, BackwardMatchesFiniteDifferencesAndAddsIntoGradients) {
  auto qkv = random_vector(qkv_elems(), 32, 0);
  const auto R = random_vector(out_elems(), 32, 1);
  std::vector<double> out(out_elems()), att(att_elems());
  const auto objective = [&] {
    attention_forward_cpu<double>(out.data(), att.data(), qkv.data(), B, Tn, C, NH);
    return dot(out, R);
  };
  objective();
  const auto saved_att = att;
  const auto dqkv0 = random_vector(qkv_elems(), 32, 2);
  auto dqkv = dqkv0;
  // Poisoned scratch: backward must write every element it reads.
  auto scratch = poisoned<double>(attention_backward_scratch_elems(B, Tn, NH));
  attention_backward_cpu<double>(dqkv.data(), scratch.data(), R.data(), qkv.data(),
                                 saved_att.data(), B, Tn, C, NH);
  expect_all_close(minus(dqkv, dqkv0), numeric_gradient(qkv, objective), kGradRtol, kGradAtol,
                   "dqkv");
}

TEST(Attention, BackwardIsBitwiseDeterministicWithTwoThreads) {
  ScopedCpuThreads threads(2);
  constexpr int Bd = 3, Td = 17, Cd = 24, NHd = 4;
  const size_t nqkv = static_cast<size_t>(Bd) * Td * 3 * Cd;
  const size_t nout = static_cast<size_t>(Bd) * Td * Cd;
  const auto qkv = cast_to<float>(random_vector(nqkv, 33, 0));
  const auto dout = cast_to<float>(random_vector(nout, 33, 1));
  std::vector<float> out(nout), att(static_cast<size_t>(Bd) * NHd * Td * Td);
  attention_forward_cpu<float>(out.data(), att.data(), qkv.data(), Bd, Td, Cd, NHd);
  std::vector<float> dqkv[2];
  for (auto& d : dqkv) {
    d = cast_to<float>(random_vector(nqkv, 33, 2));
    auto scratch = poisoned<float>(attention_backward_scratch_elems(Bd, Td, NHd));
    attention_backward_cpu<float>(d.data(), scratch.data(), dout.data(), qkv.data(), att.data(), Bd,
                                  Td, Cd, NHd);
  }
  EXPECT_EQ(0, std::memcmp(dqkv[0].data(), dqkv[1].data(), nqkv * sizeof(float)));
}

TEST(Attention, RejectsChannelsThatDoNotSplitIntoHeads) {
  std::vector<double> qkv(3 * 10, 1.0), out(10), att(1);
  EXPECT_THROW(attention_forward_cpu<double>(out.data(), att.data(), qkv.data(), 1, 1, 10, 3),
               RuntimeFailure);
}

}  // namespace
}  // namespace dpt::kernels::test
