// [Model family]: every input and head against central finite differences in double, for
// every parameter; padding that changes nothing; the layout of each member.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/errors.h"
#include "common/rng.h"
#include "datasets/batch.h"
#include "trainer/gpt.h"
#include "trainer/param_layout.h"

namespace dpt::trainer {
namespace {

struct Member {
  const char* name;
  ModelConfig cfg;
  bool lengths;
};

ModelConfig base(Task task, InputKind input, Pool pool) {
  ModelConfig c;
  c.d_model = 12;
  c.n_layer = 2;
  c.n_head = 3;
  c.task = task;
  c.input = input;
  c.pool = pool;
  c.num_outputs = task == Task::classify ? 3 : 2;
  switch (input) {
    case InputKind::image:
      c.image_h = 6, c.image_w = 4, c.channels = 2, c.patch = 2;
      c.seq_len = 6;
      break;
    case InputKind::series:
      c.seq_len = 5, c.features = 3;
      break;
    case InputKind::tokens:
      c.vocab_size = 11, c.seq_len = 7;
      break;
  }
  return c;
}

std::vector<Member> members() {
  std::vector<Member> m;
  for (Pool pool : {Pool::cls, Pool::mean}) {
    const std::string p = pool_name(pool);
    m.push_back({"image_classify", base(Task::classify, InputKind::image, pool), false});
    m.push_back({"series_regress", base(Task::regress, InputKind::series, pool), false});
    m.push_back({"series_classify", base(Task::classify, InputKind::series, pool), false});
    ModelConfig text = base(Task::classify, InputKind::tokens, pool);
    text.padded = true;
    m.push_back({"padded_text_classify", text, true});
    m.push_back({"text_regress", base(Task::regress, InputKind::tokens, pool), false});
  }
  return m;
}

// Random inputs of every field the member reads; lengths 1..T.
struct Inputs {
  std::vector<int32_t> tokens, lengths, labels;
  std::vector<float> values, targets;
  datasets::Batch batch(int B) const {
    return datasets::Batch{B,
                           tokens.empty() ? nullptr : tokens.data(),
                           values.empty() ? nullptr : values.data(),
                           lengths.empty() ? nullptr : lengths.data(),
                           labels.empty() ? nullptr : labels.data(),
                           targets.empty() ? nullptr : targets.data()};
  }
};

Inputs random_inputs(const Member& m, int B, uint64_t seed) {
  const ModelConfig& c = m.cfg;
  Inputs in;
  if (c.input == InputKind::tokens) {
    in.tokens.resize(static_cast<size_t>(B) * c.seq_len);
    for (size_t i = 0; i < in.tokens.size(); ++i)
      in.tokens[i] = static_cast<int32_t>(random_u64(seed, 1, i) % c.vocab_size);
  } else {
    in.values.resize(static_cast<size_t>(B) * c.input_values());
    for (size_t i = 0; i < in.values.size(); ++i)
      in.values[i] = static_cast<float>(random_normal(seed, 2, i));
  }
  if (m.lengths) {
    for (int b = 0; b < B; ++b)
      in.lengths.push_back(1 + static_cast<int32_t>(random_u64(seed, 3, b) % c.seq_len));
    in.lengths[0] = 2;  // at least one row with padding
  }
  if (c.task == Task::classify) {
    for (int b = 0; b < B; ++b)
      in.labels.push_back(static_cast<int32_t>(random_u64(seed, 4, b) % c.num_outputs));
  } else {
    in.targets.resize(static_cast<size_t>(B) * c.num_outputs);
    for (size_t i = 0; i < in.targets.size(); ++i)
      in.targets[i] = static_cast<float>(random_normal(seed, 5, i));
  }
  return in;
}

class ModelFamily : public ::testing::TestWithParam<Member> {};

TEST_P(ModelFamily, GradientMatchesFiniteDifferencesForEveryParameter) {
  const Member& mem = GetParam();
  const int B = 3;
  Gpt<double> m(mem.cfg, B);
  m.init_params(7);
  auto p = m.params();
  for (size_t i = 0; i < p.size(); ++i)  // away from LayerNorm's 1 and 0, the zero biases
    p[i] += 0.05 * random_normal(9, 3, i);
  const Inputs in = random_inputs(mem, B, 11);
  m.zero_grads();
  m.forward(in.batch(B));
  const double scale = 0.75;
  m.backward(scale);
  const std::vector<double> analytic(m.grads().begin(), m.grads().end());
  const double h = 1e-5;
  size_t nonzero = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double saved = p[i];
    p[i] = saved + h;
    const double lp = m.forward(in.batch(B));
    p[i] = saved - h;
    const double lm = m.forward(in.batch(B));
    p[i] = saved;
    const double numeric = scale * (lp - lm) / (2 * h);
    ASSERT_NEAR(analytic[i], numeric, 1e-7 + 1e-5 * std::abs(numeric))
        << mem.name << " " << pool_name(mem.cfg.pool) << ": parameter element " << i;
    nonzero += analytic[i] != 0.0 ? 1 : 0;
  }
  // Every tensor but unused token rows takes part: most elements have a gradient.
  EXPECT_GT(nonzero, p.size() / 2);
}

TEST_P(ModelFamily, FloatModelMatchesDoubleModel) {
  const Member& mem = GetParam();
  const int B = 4;
  Gpt<double> md(mem.cfg, B);
  Gpt<float> mf(mem.cfg, B);
  md.init_params(3);
  mf.init_params(3);
  const Inputs in = random_inputs(mem, B, 5);
  const double ld = md.forward(in.batch(B)), lf = mf.forward(in.batch(B));
  EXPECT_NEAR(lf, ld, 1e-5 * std::abs(ld));
  md.zero_grads();
  mf.zero_grads();
  md.backward(1.0);
  mf.backward(1.0);
  for (size_t i = 0; i < md.grads().size(); ++i)
    ASSERT_NEAR(mf.grads()[i], md.grads()[i], 1e-4 + 1e-3 * std::abs(md.grads()[i])) << i;
  ASSERT_EQ(mf.outputs().size(), static_cast<size_t>(B) * mem.cfg.num_outputs);
}

// [Attention choice]: fused attention (the tiled CPU twin, bidirectional, padding masked) gives
// the unfused losses, outputs and gradients, in double.
TEST_P(ModelFamily, FusedAttentionMatchesUnfusedInDouble) {
  const Member& mem = GetParam();
  const int B = 3;
  ModelConfig fused_cfg = mem.cfg, unfused_cfg = mem.cfg;
  fused_cfg.attention = AttentionImpl::fused;
  unfused_cfg.attention = AttentionImpl::unfused;
  Gpt<double> mf(fused_cfg, B), mu(unfused_cfg, B);
  ASSERT_TRUE(mf.fused_attention());
  ASSERT_FALSE(mu.fused_attention());
  mf.init_params(13);
  mu.init_params(13);
  const Inputs in = random_inputs(mem, B, 17);
  mf.zero_grads();
  mu.zero_grads();
  const double lf = mf.forward(in.batch(B)), lu = mu.forward(in.batch(B));
  EXPECT_NEAR(lf, lu, 1e-12 * std::abs(lu));
  for (size_t i = 0; i < mu.outputs().size(); ++i)
    ASSERT_NEAR(mf.outputs()[i], mu.outputs()[i], 1e-12) << "output " << i;
  mf.backward(1.0);
  mu.backward(1.0);
  for (size_t i = 0; i < mu.grads().size(); ++i)
    ASSERT_NEAR(mf.grads()[i], mu.grads()[i], 1e-12 + 1e-10 * std::abs(mu.grads()[i]))
        << "gradient element " << i;
  EXPECT_THROW(mf.attention(0), RuntimeFailure);
}

INSTANTIATE_TEST_SUITE_P(Members, ModelFamily, ::testing::ValuesIn(members()),
                         [](const auto& info) {
                           return std::string(info.param.name) + "_" +
                                  pool_name(info.param.cfg.pool);
                         });

TEST(ModelFamily, TokensPastALengthChangeNothing) {
  for (Pool pool : {Pool::cls, Pool::mean}) {
    ModelConfig c = base(Task::classify, InputKind::tokens, pool);
    c.padded = true;
    const Member mem{"text", c, true};
    const int B = 3;
    Gpt<double> m(c, B);
    m.init_params(1);
    Inputs in = random_inputs(mem, B, 2);
    const double before = m.forward(in.batch(B));
    const std::vector<double> out(m.outputs().begin(), m.outputs().end());
    for (int b = 0; b < B; ++b)
      for (int t = in.lengths[b]; t < c.seq_len; ++t)
        in.tokens[static_cast<size_t>(b) * c.seq_len + t] = (in.tokens[b * c.seq_len + t] + 5) % 11;
    EXPECT_EQ(m.forward(in.batch(B)), before) << pool_name(pool);
    for (size_t i = 0; i < out.size(); ++i)
      EXPECT_EQ(m.outputs()[i], out[i]) << pool_name(pool);
    // ...while a token inside a length does change it.
    in.tokens[0] = (in.tokens[0] + 1) % 11;
    EXPECT_NE(m.forward(in.batch(B)), before) << pool_name(pool);
  }
}

TEST(ModelFamily, LayoutOfAVisionTransformer) {
  ModelConfig c = base(Task::classify, InputKind::image, Pool::cls);
  const ParamLayout layout(c);
  const auto& t = layout.tensors();
  EXPECT_EQ(t[0].name, "patch_embed.weight");
  EXPECT_EQ(t[0].shape, (std::vector<size_t>{12, 2 * 2 * 2}));
  EXPECT_EQ(t[2].name, "cls_token");
  EXPECT_EQ(t[3].name, "wpe.weight");
  EXPECT_EQ(t[3].shape, (std::vector<size_t>{7, 12}));  // 6 patches and the class token
  EXPECT_EQ(t[t.size() - 2].name, "head.weight");
  EXPECT_EQ(t.back().shape, (std::vector<size_t>{3}));
  EXPECT_FALSE(decays(t[2]));  // the class token is one-dimensional: not decayed
}

TEST(ModelFamily, LanguageModelLayoutIsRoundOnes) {
  const ModelConfig c;  // lm on tokens
  const ParamLayout layout(c);
  EXPECT_EQ(layout.tensors().front().name, "wte.weight");
  EXPECT_EQ(layout.tensors()[1].name, "wpe.weight");
  EXPECT_EQ(layout.tensors().back().name, "ln_f.bias");
}

}  // namespace
}  // namespace dpt::trainer
