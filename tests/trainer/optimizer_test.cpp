// The learning-rate schedule, gradient clipping and the per-tensor AdamW step.
#include <gtest/gtest.h>

#include <cmath>

#include "trainer/optimizer.h"

namespace dpt::trainer {
namespace {

TEST(LearningRate, WarmsUpLinearlyThenDecaysByCosineToTheFloor) {
  OptimizerConfig c;
  c.lr = 1e-3;
  c.min_lr_ratio = 0.1;
  c.warmup_steps = 10;
  c.total_steps = 110;
  EXPECT_DOUBLE_EQ(learning_rate(c, 1), 1e-4);
  EXPECT_DOUBLE_EQ(learning_rate(c, 5), 5e-4);
  EXPECT_DOUBLE_EQ(learning_rate(c, 10), 1e-3);
  // Halfway through the decay the cosine is at the midpoint of lr and the floor.
  EXPECT_NEAR(learning_rate(c, 60), 0.5 * (1e-3 + 1e-4), 1e-15);
  EXPECT_NEAR(learning_rate(c, 110), 1e-4, 1e-15);
  for (int s = 11; s <= 110; ++s)
    EXPECT_LT(learning_rate(c, s), learning_rate(c, s - 1) + 1e-18);
}

TEST(LearningRate, WithoutWarmupStartsAtPeak) {
  OptimizerConfig c;
  c.lr = 2e-3;
  c.warmup_steps = 0;
  c.total_steps = 100;
  EXPECT_NEAR(learning_rate(c, 0), 2e-3, 1e-15);
  EXPECT_LT(learning_rate(c, 1), 2e-3);
}

TEST(ClipFactor, ScalesOnlyNormsAboveTheLimit) {
  EXPECT_EQ(clip_factor(0.5, 1.0), 1.0);
  EXPECT_NEAR(clip_factor(4.0, 1.0) * 4.0, 1.0, 1e-6);
  EXPECT_EQ(clip_factor(100.0, 0.0), 1.0);  // 0 = off
  EXPECT_EQ(clip_factor(std::nan(""), 1.0), 1.0);
}

TEST(AdamW, StepAppliesDecayPerTensorAndClipsTheGlobalNorm) {
  ModelConfig m;
  m.vocab_size = 3;
  m.seq_len = 2;
  m.d_model = 4;
  m.n_layer = 1;
  m.n_head = 2;
  ParamLayout layout(m);
  OptimizerConfig c;
  c.lr = 0.1;
  c.warmup_steps = 0;
  c.total_steps = 1;
  c.min_lr_ratio = 1.0;  // constant lr
  c.weight_decay = 0.5;
  c.grad_clip = 1.0;
  AdamW opt(c, layout);
  std::vector<float> p(layout.total(), 1.0f), g(layout.total(), 0.0f);
  g[0] = 3.0f;  // wte[0]; decays
  const size_t bias = layout.get("blocks.0.attn.qkv.bias").offset;
  g[bias] = 4.0f;  // no decay
  const StepStats s = opt.step(p, g, 1);
  EXPECT_NEAR(s.grad_norm, 5.0, 1e-12);
  EXPECT_NEAR(s.clip, 1.0 / (5.0 + 1e-6), 1e-12);
  // First step: mhat/sqrt(vhat) = sign(g) (up to eps), so the update is lr * (1 + wd * p).
  EXPECT_NEAR(p[0], 1.0 - 0.1 * (1.0 + 0.5), 1e-6);
  EXPECT_NEAR(p[bias], 1.0 - 0.1, 1e-6);
  // Zero gradient: only decay moves decaying tensors; others stay.
  EXPECT_NEAR(p[1], 1.0 - 0.1 * 0.5, 1e-6);
  const size_t ln = layout.get("blocks.0.ln1.weight").offset;
  EXPECT_EQ(p[ln], 1.0f);
}

}  // namespace
}  // namespace dpt::trainer
