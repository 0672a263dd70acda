// [Gradient buckets]: the plan tiles the flat gradient buffer from its end, and the model's
// frontier tells the truth (no gradient at or above it changes afterwards in the step).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "common/errors.h"
#include "trainer/gpt.h"
#include "trainer/gradient_exchange.h"
#include "trainer/param_layout.h"

namespace dpt::trainer {
namespace {

// Every element in exactly one bucket, buckets contiguous from the end, none empty.
void expect_tiles_from_end(const std::vector<GradientBucket>& plan, size_t total) {
  std::vector<int> seen(total, 0);
  size_t end = total;
  for (const GradientBucket& b : plan) {
    EXPECT_GT(b.count, 0u);
    EXPECT_EQ(b.offset + b.count, end) << "buckets must run from the end without gaps";
    for (size_t i = b.offset; i < b.offset + b.count && i < total; ++i)
      ++seen[i];
    end = b.offset;
  }
  EXPECT_EQ(end, 0u);
  size_t wrong = 0;
  for (int s : seen)
    wrong += s != 1;
  EXPECT_EQ(wrong, 0u) << "elements not covered exactly once";
}

TEST(GradientBuckets, FirstBucketIsOneMebibyteThenBucketSizeThenTheRest) {
  const size_t mib = 1 << 20;
  const size_t total = 10'000'003;  // 40 MB of floats: 1 MiB, 4 x 8 MiB, the rest
  const auto plan = plan_gradient_buckets(total, sizeof(float), 8 * mib);
  ASSERT_EQ(plan.size(), 6u);
  EXPECT_EQ(plan[0].count, mib / 4);
  EXPECT_EQ(plan[0].offset, total - mib / 4);
  for (int k = 1; k <= 4; ++k)
    EXPECT_EQ(plan[k].count, 2 * mib);
  EXPECT_EQ(plan[5].count, total - mib / 4 - 4 * 2 * mib);
  expect_tiles_from_end(plan, total);
}

TEST(GradientBuckets, LayoutSmallerThanOneBucketIsOneBucket) {
  const auto plan = plan_gradient_buckets(1000, sizeof(float), 25 << 20);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].offset, 0u);
  EXPECT_EQ(plan[0].count, 1000u);
  EXPECT_TRUE(plan_gradient_buckets(0, sizeof(float), 25 << 20).empty());
}

TEST(GradientBuckets, ZeroBucketBytesIsOneFlatBucket) {
  const auto plan = plan_gradient_buckets(10'000'003, sizeof(float), 0);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].count, 10'000'003u);
}

TEST(GradientBuckets, BucketsSmallerThanTheFirstMakeTheFirstThatSizeToo) {
  // 100 bytes = 25 floats, and odd element counts; sizes below one element still hold one.
  const auto plan = plan_gradient_buckets(1001, sizeof(float), 100);
  ASSERT_EQ(plan.size(), 41u);  // 40 x 25 + 1
  EXPECT_EQ(plan.front().count, 25u);
  EXPECT_EQ(plan.back().count, 1u);
  expect_tiles_from_end(plan, 1001);
  const auto tiny = plan_gradient_buckets(7, sizeof(double), 3);
  EXPECT_EQ(tiny.size(), 7u);
  expect_tiles_from_end(tiny, 7);
}

TEST(GradientBuckets, BucketsOfARealLayoutSplitTensors) {
  ModelConfig cfg;
  cfg.vocab_size = 101;
  cfg.seq_len = 13;
  cfg.d_model = 24;
  cfg.n_layer = 3;
  cfg.n_head = 4;
  const ParamLayout layout(cfg);
  const auto plan = plan_gradient_buckets(layout.total(), sizeof(float), 4000);
  expect_tiles_from_end(plan, layout.total());
  // 1000-float buckets: some boundary falls strictly inside a tensor.
  size_t splits = 0;
  for (const GradientBucket& b : plan)
    for (const TensorView& t : layout.tensors())
      splits += b.offset > t.offset && b.offset < t.offset + t.numel();
  EXPECT_GT(splits, 0u);
}

TEST(GradientBuckets, ExchangeRefusesAPlanWithGapsOrEmptyBuckets) {
  EXPECT_THROW(GradientExchange({{5, 5}, {0, 4}}), RuntimeFailure);  // element 4 missing
  EXPECT_THROW(GradientExchange({{5, 5}, {5, 0}, {0, 5}}), RuntimeFailure);
  EXPECT_THROW(GradientExchange({{0, 5}, {5, 5}}), RuntimeFailure);  // wrong order
  EXPECT_NO_THROW(GradientExchange({{5, 5}, {0, 5}}));
}

// The frontier's claim, checked on the model: after each report, no gradient at or above the
// frontier changes for the rest of backward. Frontiers fall strictly, end at block 0's first
// tensor, and the tied embedding below them does change afterwards.
TEST(GradientBuckets, BackwardFrontierMarksGradientsThatNoLongerChange) {
  ModelConfig cfg;
  cfg.vocab_size = 37;
  cfg.seq_len = 7;
  cfg.d_model = 16;
  cfg.n_layer = 3;
  cfg.n_head = 2;
  Gpt<float> model(cfg, 2);
  model.init_params(11);
  std::vector<int32_t> in(2 * 7), tgt(2 * 7);
  for (size_t i = 0; i < in.size(); ++i) {
    in[i] = static_cast<int32_t>((i * 7 + 3) % 37);
    tgt[i] = static_cast<int32_t>((i * 5 + 1) % 37);
  }
  model.zero_grads();
  model.forward(in.data(), tgt.data(), 2);
  std::vector<size_t> frontiers;
  std::vector<std::vector<float>> snapshots;
  model.backward(1.0, [&](size_t frontier) {
    frontiers.push_back(frontier);
    const auto g = model.grads();
    snapshots.emplace_back(g.begin() + static_cast<std::ptrdiff_t>(frontier), g.end());
  });
  ASSERT_EQ(frontiers.size(), static_cast<size_t>(cfg.n_layer + 1));
  const ParamLayout& layout = model.layout();
  EXPECT_EQ(frontiers.front(), layout.get("ln_f.weight").offset);
  EXPECT_EQ(frontiers.back(), layout.get("blocks.0.ln1.weight").offset);
  const auto g = model.grads();
  for (size_t k = 0; k < frontiers.size(); ++k) {
    if (k > 0) {
      EXPECT_LT(frontiers[k], frontiers[k - 1]);
    }
    EXPECT_EQ(std::memcmp(snapshots[k].data(), g.data() + frontiers[k],
                          snapshots[k].size() * sizeof(float)),
              0)
        << "a gradient at or above frontier " << frontiers[k] << " changed after it was reported";
  }
  // The tied embedding gets the input embedding's gradient after the last report.
  const TensorView& wte = layout.get("wte.weight");
  std::vector<float> wte_before(g.begin(), g.begin() + static_cast<std::ptrdiff_t>(wte.numel()));
  model.zero_grads();
  model.forward(in.data(), tgt.data(), 2);
  model.backward(1.0, [&](size_t frontier) {
    if (frontier == frontiers.back()) {
      const auto now = model.grads();
      wte_before.assign(now.begin(), now.begin() + static_cast<std::ptrdiff_t>(wte.numel()));
    }
  });
  EXPECT_NE(std::memcmp(wte_before.data(), model.grads().data(), wte.numel() * sizeof(float)), 0)
      << "the tied embedding should still change after the last frontier";
}

}  // namespace
}  // namespace dpt::trainer
