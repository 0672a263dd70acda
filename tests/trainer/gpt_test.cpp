// The whole model's gradient against central finite differences (double), float/double
// agreement, initialization, the parameter layout and the decay rule.
#include <gtest/gtest.h>

#include <cmath>
#include <utility>
#include <vector>

#include "common/errors.h"
#include "common/rng.h"
#include "trainer/gpt.h"
#include "trainer/param_layout.h"

namespace dpt::trainer {
namespace {

ModelConfig tiny() {
  ModelConfig c;
  c.vocab_size = 11;
  c.seq_len = 5;
  c.d_model = 12;
  c.n_layer = 2;
  c.n_head = 3;
  return c;
}

void random_tokens(std::vector<int32_t>& v, int vocab, uint64_t seed) {
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<int32_t>(random_u64(seed, 7, i) % static_cast<uint64_t>(vocab));
}

// Perturb LayerNorm weights and biases away from 1/0 so that their gradients are exercised
// in a generic position.
template <typename T>
void perturb_all(Gpt<T>& m, uint64_t seed) {
  auto p = m.params();
  for (size_t i = 0; i < p.size(); ++i)
    p[i] += static_cast<T>(0.05 * random_normal(seed, 3, i));
}

TEST(Gpt, GradientMatchesFiniteDifferencesForEveryParameter) {
  const ModelConfig cfg = tiny();
  const int B = 2;
  Gpt<double> m(cfg, B);
  m.init_params(42);
  perturb_all(m, 5);
  std::vector<int32_t> in(B * cfg.seq_len), tgt(in.size());
  random_tokens(in, cfg.vocab_size, 1);
  random_tokens(tgt, cfg.vocab_size, 2);

  m.zero_grads();
  m.forward(in.data(), tgt.data(), B);
  const double scale = 0.75;  // backward honours its loss scale
  m.backward(scale);
  const std::vector<double> analytic(m.grads().begin(), m.grads().end());

  auto p = m.params();
  const double h = 1e-5;
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double saved = p[i];
    p[i] = saved + h;
    const double lp = m.forward(in.data(), tgt.data(), B);
    p[i] = saved - h;
    const double lm = m.forward(in.data(), tgt.data(), B);
    p[i] = saved;
    const double numeric = scale * (lp - lm) / (2 * h);
    const double err =
        std::abs(numeric - analytic[i]) / std::max(1e-6, std::abs(numeric) + std::abs(analytic[i]));
    if (err > worst) {
      worst = err;
      worst_i = i;
    }
    ASSERT_NEAR(analytic[i], numeric, 1e-7 + 1e-5 * std::abs(numeric)) << "parameter element " << i;
  }
  std::printf("worst relative error %.3g at element %zu of %zu\n", worst, worst_i, p.size());
}

TEST(Gpt, GradientsAccumulateAcrossBackwardCalls) {
  const ModelConfig cfg = tiny();
  Gpt<double> m(cfg, 1);
  m.init_params(3);
  std::vector<int32_t> in(cfg.seq_len), tgt(in.size());
  random_tokens(in, cfg.vocab_size, 4);
  random_tokens(tgt, cfg.vocab_size, 5);
  m.zero_grads();
  m.forward(in.data(), tgt.data(), 1);
  m.backward(1.0);
  const std::vector<double> once(m.grads().begin(), m.grads().end());
  m.forward(in.data(), tgt.data(), 1);
  m.backward(1.0);
  for (size_t i = 0; i < once.size(); ++i)
    ASSERT_NEAR(m.grads()[i], 2 * once[i], 1e-12);
}

TEST(Gpt, FloatModelMatchesDoubleModel) {
  const ModelConfig cfg = tiny();
  const int B = 3;
  Gpt<double> md(cfg, B);
  Gpt<float> mf(cfg, B);
  md.init_params(9);
  mf.init_params(9);
  for (size_t i = 0; i < md.params().size(); ++i)
    ASSERT_EQ(static_cast<float>(md.params()[i]), mf.params()[i]);
  std::vector<int32_t> in(B * cfg.seq_len), tgt(in.size());
  random_tokens(in, cfg.vocab_size, 11);
  random_tokens(tgt, cfg.vocab_size, 12);
  md.zero_grads();
  mf.zero_grads();
  const double ld = md.forward(in.data(), tgt.data(), B);
  const double lf = mf.forward(in.data(), tgt.data(), B);
  EXPECT_NEAR(lf, ld, 1e-5 * ld);
  md.backward(1.0);
  mf.backward(1.0);
  double max_abs = 0;
  for (double g : md.grads())
    max_abs = std::max(max_abs, std::abs(g));
  for (size_t i = 0; i < md.grads().size(); ++i)
    ASSERT_NEAR(mf.grads()[i], md.grads()[i], 1e-4 * max_abs) << "element " << i;
}

// Ten steps of plain gradient descent (rate 0.5) of two language models from one init, on the
// same two batches in turn; check(step, loss_a, loss_b) after each step's backward. Returns the
// first and the last of a's losses.
template <typename Check>
std::pair<double, double> descend_side_by_side(Gpt<float>& a, Gpt<float>& b, int B, uint64_t seed,
                                               Check check) {
  const ModelConfig& cfg = a.config();
  a.init_params(seed);
  b.init_params(seed);
  std::vector<int32_t> in(B * cfg.seq_len), tgt(in.size());
  double first = 0, last = 0;
  for (int step = 0; step < 10; ++step) {
    random_tokens(in, cfg.vocab_size, seed + 100 + step % 2);
    random_tokens(tgt, cfg.vocab_size, seed + 200 + step % 2);
    double loss[2];
    int k = 0;
    for (Gpt<float>* m : {&a, &b}) {
      m->zero_grads();
      loss[k++] = m->forward(in.data(), tgt.data(), B);
      m->backward(1.0);
    }
    check(step, loss[0], loss[1]);
    (step == 0 ? first : last) = loss[0];
    for (Gpt<float>* m : {&a, &b}) {
      auto p = m->params();
      auto g = m->grads();
      for (size_t i = 0; i < p.size(); ++i)
        p[i] -= 0.5f * g[i];
    }
  }
  return {first, last};
}

// [Padded vocabulary]: logits rows padded to a multiple of 64 (257 -> 320, the byte vocabulary
// with end-of-text) train as the unpadded rows do; the parameters are the same tensors either
// way.
TEST(Gpt, PaddedVocabularyTrainsLikeUnpadded) {
  ModelConfig padded = tiny();
  padded.vocab_size = 257;
  padded.seq_len = 16;
  padded.d_model = 32;
  padded.n_head = 4;
  ModelConfig unpadded = padded;
  unpadded.vocab_multiple = 1;
  ASSERT_EQ(padded.padded_vocab(), 320);
  ASSERT_EQ(unpadded.padded_vocab(), 257);
  const int B = 4;
  Gpt<float> mp(padded, B), mu(unpadded, B);
  ASSERT_EQ(mp.params().size(), mu.params().size());
  const auto [first, last] =
      descend_side_by_side(mp, mu, B, 3, [&](int step, double lp, double lu) {
        EXPECT_NEAR(lp, lu, 1e-6 * lu) << "step " << step;
        const std::vector<float> xp = mp.lm_logits(), xu = mu.lm_logits();
        ASSERT_EQ(xp.size(), static_cast<size_t>(B) * padded.seq_len * padded.vocab_size);
        ASSERT_EQ(xp.size(), xu.size());
        for (size_t i = 0; i < xp.size(); ++i)
          ASSERT_NEAR(xp[i], xu[i], 1e-5) << "step " << step << " logit " << i;
      });
  EXPECT_LT(last, first - 0.1);  // it trained
}

// [Attention choice]: the language model with fused attention (the CPU's tiled twin, T = 100:
// a full tile and a partial one, causal) trains as the unfused reference does, losses to 1e-6.
TEST(Gpt, FusedAttentionTrainsLikeUnfused) {
  ModelConfig fused = tiny();
  fused.vocab_size = 257;
  fused.seq_len = 100;
  fused.d_model = 16;
  fused.n_head = 2;
  fused.attention = AttentionImpl::fused;
  ModelConfig unfused = fused;
  unfused.attention = AttentionImpl::unfused;
  const int B = 2;
  Gpt<float> mf(fused, B), mu(unfused, B);
  ASSERT_TRUE(mf.fused_attention());
  const auto [first, last] = descend_side_by_side(mf, mu, B, 4, [](int step, double lf, double lu) {
    EXPECT_NEAR(lf, lu, 1e-6 * lu) << "step " << step;
  });
  EXPECT_LT(last, first - 0.1);  // it trained
}

TEST(Gpt, InitialLossIsNearLogVocabulary) {
  ModelConfig cfg = tiny();
  cfg.vocab_size = 256;
  cfg.seq_len = 16;
  cfg.d_model = 32;
  cfg.n_head = 4;
  Gpt<float> m(cfg, 4);
  m.init_params(1);
  std::vector<int32_t> in(4 * cfg.seq_len), tgt(in.size());
  random_tokens(in, cfg.vocab_size, 1);
  random_tokens(tgt, cfg.vocab_size, 2);
  const double loss = m.forward(in.data(), tgt.data(), 4);
  EXPECT_NEAR(loss, std::log(256.0), 0.1);
}

TEST(Gpt, InitializationDependsOnSeedOnly) {
  const ModelConfig cfg = tiny();
  Gpt<float> a(cfg, 1), b(cfg, 2), c(cfg, 1);
  a.init_params(77);
  b.init_params(77);
  c.init_params(78);
  EXPECT_TRUE(std::equal(a.params().begin(), a.params().end(), b.params().begin()));
  EXPECT_FALSE(std::equal(a.params().begin(), a.params().end(), c.params().begin()));
}

TEST(ParamLayout, TensorsTileTheFlatBufferInOrder) {
  const ModelConfig cfg = tiny();
  ParamLayout layout(cfg);
  size_t expect = 0;
  for (const auto& t : layout.tensors()) {
    EXPECT_EQ(t.offset, expect) << t.name;
    expect += t.numel();
  }
  EXPECT_EQ(layout.total(), expect);
  const size_t V = 11, T = 5, C = 12, L = 2;
  EXPECT_EQ(layout.total(), V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C);
  EXPECT_EQ(layout.get("blocks.1.attn.qkv.weight").shape, (std::vector<size_t>{3 * C, C}));
}

TEST(ParamLayout, DecayRuleCoversMatricesAndEmbeddingsOnly) {
  ParamLayout layout(tiny());
  for (const auto& t : layout.tensors()) {
    const bool one_dim =
        t.name.find(".bias") != std::string::npos || t.name.find("ln") != std::string::npos;
    EXPECT_EQ(decays(t), !one_dim) << t.name;
  }
  EXPECT_TRUE(decays(layout.get("wte.weight")));
  EXPECT_TRUE(decays(layout.get("wpe.weight")));
  EXPECT_FALSE(decays(layout.get("ln_f.weight")));
}

TEST(ModelConfig, RejectsHeadCountThatDoesNotDivideWidth) {
  ModelConfig c = tiny();
  c.n_head = 5;
  try {
    c.validate();
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--n-head 5 does not divide --d-model 12"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace dpt::trainer
