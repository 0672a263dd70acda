// [Decoder]: the key/value cache gives, position by position, the logits the training model
// computes for the same tokens (double and float); [Attention decode] is the last row of the
// full attention; [Sampling]: greedy, top-k and top-p limits, the same seed the same tokens,
// and draws whose frequencies follow the softmax.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "common/rng.h"
#include "kernels/attention.h"
#include "trainer/decoder.h"
#include "trainer/gpt.h"
#include "trainer/sampling.h"

namespace dpt::trainer {
namespace {

ModelConfig lm() {
  ModelConfig c;
  c.vocab_size = 23;
  c.seq_len = 9;
  c.d_model = 12;
  c.n_layer = 2;
  c.n_head = 3;
  return c;
}

template <typename T>
void check_cache_matches_full_forward(double tol) {
  const ModelConfig c = lm();
  Gpt<T> full(c, 1);
  full.init_params(5);
  auto p = full.params();
  // Away from the zero biases and unit LayerNorms, and float values (the decoder reads float
  // parameters, as checkpoints hold them).
  for (size_t i = 0; i < p.size(); ++i)
    p[i] = static_cast<T>(static_cast<float>(p[i] + 0.05 * random_normal(6, 1, i)));
  std::vector<int32_t> tokens(c.seq_len), targets(c.seq_len, 0);
  for (int t = 0; t < c.seq_len; ++t)
    tokens[t] = static_cast<int32_t>(random_u64(7, 1, t) % c.vocab_size);
  full.forward(tokens.data(), targets.data(), 1);
  const std::vector<T> want = full.lm_logits();
  const std::vector<float> params(p.begin(), p.end());
  GptDecoder<T> dec(c, params);
  for (int t = 0; t < c.seq_len; ++t) {
    const auto got = dec.step(tokens[t]);
    for (int v = 0; v < c.vocab_size; ++v) {
      const double w = want[static_cast<size_t>(t) * c.vocab_size + v];
      ASSERT_NEAR(got[v], w, tol * (1 + std::abs(w))) << "position " << t << " token " << v;
    }
  }
  EXPECT_EQ(dec.position(), c.seq_len);
  EXPECT_ANY_THROW(dec.step(0));  // the cache is full
  dec.reset();
  EXPECT_NEAR(dec.step(tokens[0])[3], want[3], tol * (1 + std::abs(double(want[3]))));
}

TEST(Decoder, KeyValueCacheGivesTheFullForwardsLogitsAtEveryPosition) {
  check_cache_matches_full_forward<double>(1e-12);
  check_cache_matches_full_forward<float>(2e-5);
}

TEST(Decoder, RefusesAModelThatIsNotALanguageModel) {
  ModelConfig c = lm();
  c.task = Task::classify;
  c.num_outputs = 3;
  const std::vector<float> params(ParamLayout(c).total());
  EXPECT_THROW(GptDecoder<float>(c, params), UsageError);
}

TEST(AttentionDecode, IsTheLastRowOfTheFullCausalAttention) {
  const int Tn = 7, C = 12, NH = 3;
  std::vector<double> qkv(static_cast<size_t>(Tn) * 3 * C), out(Tn * C), att(NH * Tn * Tn);
  for (size_t i = 0; i < qkv.size(); ++i)
    qkv[i] = random_normal(8, 1, i);
  kernels::attention_forward_cpu<double>(out.data(), att.data(), qkv.data(), 1, Tn, C, NH);
  std::vector<double> k(Tn * C), v(Tn * C), o(C), probs(NH * Tn);
  for (int t = 0; t < Tn; ++t)
    for (int c = 0; c < C; ++c) {
      k[t * C + c] = qkv[t * 3 * C + C + c];
      v[t * C + c] = qkv[t * 3 * C + 2 * C + c];
    }
  kernels::attention_decode_cpu<double>(o.data(), probs.data(), &qkv[(Tn - 1) * 3 * C], k.data(),
                                        v.data(), Tn, C, NH);
  for (int c = 0; c < C; ++c)
    EXPECT_NEAR(o[c], out[(Tn - 1) * C + c], 1e-12);
  for (int h = 0; h < NH; ++h)
    for (int s = 0; s < Tn; ++s)
      EXPECT_NEAR(probs[h * Tn + s], att[(static_cast<size_t>(h) * Tn + Tn - 1) * Tn + s], 1e-12);
}

TEST(Sampling, GreedyTopKAndTopPLimitsAndTheSameSeedGiveTheSameTokens) {
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.5f, 0.0f};
  EXPECT_EQ(Sampler({0.0, 0, 1.0, 1}).next(logits, 0), 1);  // greedy
  Sampler top1({1.0, 1, 1.0, 3});
  Sampler tiny_p({1.0, 0, 1e-6, 3});
  for (uint64_t i = 0; i < 50; ++i) {
    EXPECT_EQ(top1.next(logits, i), 1);
    EXPECT_EQ(tiny_p.next(logits, i), 1);
  }
  Sampler top2({1.0, 2, 1.0, 4});
  for (uint64_t i = 0; i < 200; ++i) {
    const int t = top2.next(logits, i);
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
  Sampler a({0.8, 0, 0.9, 42}), b({0.8, 0, 0.9, 42}), c({0.8, 0, 0.9, 43});
  int differ = 0;
  for (uint64_t i = 0; i < 100; ++i) {
    const int x = a.next(logits, i);
    EXPECT_EQ(x, b.next(logits, i));
    differ += x != c.next(logits, i);
  }
  EXPECT_GT(differ, 0) << "another seed should draw other tokens";
  EXPECT_THROW(Sampler({-1.0, 0, 1.0, 1}), UsageError);
  EXPECT_THROW(Sampler({1.0, 0, 0.0, 1}), UsageError);
}

TEST(Sampling, FrequenciesFollowTheTemperedSoftmax) {
  const std::vector<float> logits = {1.0f, 0.0f, -0.5f, 2.0f};
  const double temperature = 0.7;
  Sampler s({temperature, 0, 1.0, 9});
  std::map<int, int> count;
  const int n = 40000;
  for (int i = 0; i < n; ++i)
    ++count[s.next(logits, static_cast<uint64_t>(i))];
  double z = 0;
  for (float l : logits)
    z += std::exp(l / temperature);
  for (int v = 0; v < 4; ++v) {
    const double p = std::exp(logits[v] / temperature) / z;
    // 5 standard deviations of a binomial proportion.
    EXPECT_NEAR(count[v] / double(n), p, 5 * std::sqrt(p * (1 - p) / n)) << "token " << v;
  }
}

}  // namespace
}  // namespace dpt::trainer
