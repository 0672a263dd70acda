// attention_forward_cpu / attention_backward_cpu: naive reference with the causal mask and
// with the other [Attention mask]s (bidirectional, padding lengths), finite differences, float
// vs double, determinism.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
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

// Straight from the definition in attention.h, one score at a time; query t of sequence b sees
// keys [0, seen(b, t)).
template <typename Seen>
void naive_attention_seeing(std::vector<double>& out, std::vector<double>& att,
                            const std::vector<double>& qkv, Seen seen_keys) {
  out.assign(out_elems(), 0.0);
  att.assign(att_elems(), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      for (int t = 0; t < Tn; ++t) {
        const double* q = &qkv[(b * Tn + t) * 3 * C + h * hs];
        const int seen = seen_keys(b, t);
        std::vector<double> score(seen);
        double maxv = -INFINITY;
        for (int s = 0; s < seen; ++s) {
          const double* k = &qkv[(b * Tn + s) * 3 * C + C + h * hs];
          double d = 0.0;
          for (int i = 0; i < hs; ++i) {
            d += q[i] * k[i];
          }
          score[s] = d * scale;
          maxv = std::max(maxv, score[s]);
        }
        double sum = 0.0;
        for (int s = 0; s < seen; ++s) {
          sum += std::exp(score[s] - maxv);
        }
        for (int s = 0; s < seen; ++s) {
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

void naive_attention(std::vector<double>& out, std::vector<double>& att,
                     const std::vector<double>& qkv) {
  naive_attention_seeing(out, att, qkv, [](int, int t) { return t + 1; });
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

// The masks of the other tasks: bidirectional, bidirectional with padding, causal with padding.
const std::vector<int32_t> kLens = {5, 2};  // sequence 1 has 3 padding positions
struct MaskCase {
  const char* name;
  AttentionMask mask;
};
std::vector<MaskCase> mask_cases() {
  return {{"bidirectional", {false, nullptr}},
          {"bidirectional with lengths", {false, kLens.data()}},
          {"causal with lengths", {true, kLens.data()}}};
}

TEST(AttentionMask, ForwardMatchesNaiveReferenceForEveryMask) {
  const auto qkv = random_vector(qkv_elems(), 35, 0);
  for (const MaskCase& m : mask_cases()) {
    auto out = poisoned<double>(out_elems()), att = poisoned<double>(att_elems());
    attention_forward_cpu<double>(out.data(), att.data(), qkv.data(), B, Tn, C, NH, m.mask);
    std::vector<double> want_out, want_att;
    naive_attention_seeing(want_out, want_att, qkv, [&](int b, int t) {
      return visible_keys(m.mask.causal, m.mask.lengths ? m.mask.lengths[b] : Tn, t);
    });
    expect_all_close(out, want_out, 1e-12, 1e-14, std::string(m.name) + " out");
    expect_all_close(att, want_att, 1e-12, 1e-14, std::string(m.name) + " att");
    // Hidden keys hold exact zeros (the backward relies on them), the naive reference's zeros.
    for (size_t i = 0; i < att.size(); ++i)
      if (want_att[i] == 0.0) {
        ASSERT_EQ(att[i], 0.0) << m.name << " element " << i;
      }
  }
  EXPECT_EQ(visible_keys(false, 2, 4), 2);
  EXPECT_EQ(visible_keys(true, 2, 4), 2);
  EXPECT_EQ(visible_keys(true, 5, 1), 2);
}

TEST(AttentionMask, PaddingKeysAndValuesChangeNoValidPosition) {
  auto qkv = random_vector(qkv_elems(), 36, 0);
  const AttentionMask mask{false, kLens.data()};
  std::vector<double> before(out_elems()), after(out_elems()), att(att_elems());
  attention_forward_cpu<double>(before.data(), att.data(), qkv.data(), B, Tn, C, NH, mask);
  for (int t = kLens[1]; t < Tn; ++t)  // sequence 1's padding: q, k and v
    for (int i = 0; i < 3 * C; ++i)
      qkv[(1 * Tn + t) * 3 * C + i] = 1e3 * (i % 3 - 1);
  attention_forward_cpu<double>(after.data(), att.data(), qkv.data(), B, Tn, C, NH, mask);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < kLens[b]; ++t)
      for (int i = 0; i < C; ++i)
        ASSERT_EQ(before[(b * Tn + t) * C + i], after[(b * Tn + t) * C + i])
            << "b " << b << " t " << t;
}

TEST(AttentionMask, BackwardMatchesFiniteDifferencesForEveryMask) {
  for (const MaskCase& m : mask_cases()) {
    auto qkv = random_vector(qkv_elems(), 37, 0);
    const auto R = random_vector(out_elems(), 37, 1);
    std::vector<double> out(out_elems()), att(att_elems());
    const auto objective = [&] {
      attention_forward_cpu<double>(out.data(), att.data(), qkv.data(), B, Tn, C, NH, m.mask);
      return dot(out, R);
    };
    objective();
    const auto saved_att = att;
    const auto dqkv0 = random_vector(qkv_elems(), 37, 2);
    auto dqkv = dqkv0;
    auto scratch = poisoned<double>(attention_backward_scratch_elems(B, Tn, NH));
    attention_backward_cpu<double>(dqkv.data(), scratch.data(), R.data(), qkv.data(),
                                   saved_att.data(), B, Tn, C, NH, m.mask);
    expect_all_close(minus(dqkv, dqkv0), numeric_gradient(qkv, objective), kGradRtol, kGradAtol,
                     std::string(m.name) + " dqkv");
  }
}

TEST(AttentionMask, ALengthOutsideTheSequenceIsRefused) {
  std::vector<double> qkv(qkv_elems(), 0.1), out(out_elems()), att(att_elems());
  for (const std::vector<int32_t>& lens : {std::vector<int32_t>{5, 0}, {6, 2}}) {
    const AttentionMask mask{false, lens.data()};
    EXPECT_THROW(
        attention_forward_cpu<double>(out.data(), att.data(), qkv.data(), B, Tn, C, NH, mask),
        RuntimeFailure);
  }
}

}  // namespace
}  // namespace dpt::kernels::test
