// [Sample order]: epochs are permutations, the order depends on (seed, epoch) only, the local
// shuffle keeps each window within its shards, and the samples of global batch k are the same
// whatever the number of ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "datasets/sample_order.h"

namespace dpt::datasets {
namespace {

TEST(RandomPermutation, IsABijectionForOddSizes) {
  for (uint64_t n : {1, 2, 3, 5, 7, 11, 13, 1000, 4097, 65537}) {
    RandomPermutation p(n, 42 + n);
    std::vector<char> seen(n, 0);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t x = p(i);
      ASSERT_LT(x, n);
      ASSERT_FALSE(seen[x]) << "n=" << n << " value " << x << " twice";
      seen[x] = 1;
    }
  }
}

TEST(RandomPermutation, KeysGiveDifferentOrdersThatLookShuffled) {
  const uint64_t n = 10000;
  RandomPermutation a(n, 1), b(n, 2);
  uint64_t same = 0, fixed = 0, ascending = 0;
  for (uint64_t i = 0; i < n; ++i) {
    same += a(i) == b(i);
    fixed += a(i) == i;
    if (i > 0) ascending += a(i) > a(i - 1);
  }
  EXPECT_LT(same, 20u);
  EXPECT_LT(fixed, 20u);
  // A random order rises about half the time.
  EXPECT_NEAR(static_cast<double>(ascending) / n, 0.5, 0.03);
}

const std::vector<uint64_t> kCounts = {7, 1, 13, 5, 11, 2, 9, 3, 6};  // 57 samples, 9 shards

std::vector<SampleRef> epoch_refs(SampleOrder& o, uint64_t epoch) {
  std::vector<SampleRef> out;
  for (uint64_t i = 0; i < o.num_samples(); ++i)
    out.push_back(o.at(epoch * o.num_samples() + i));
  return out;
}

class SampleOrderModes : public ::testing::TestWithParam<ShuffleMode> {
 protected:
  ShuffleConfig config() const { return ShuffleConfig{GetParam(), 3}; }
};

TEST_P(SampleOrderModes, EachEpochVisitsEverySampleOnce) {
  SampleOrder order(7, kCounts, config());
  ASSERT_EQ(order.num_samples(), 57u);
  for (uint64_t epoch = 0; epoch < 3; ++epoch) {
    auto refs = epoch_refs(order, epoch);
    std::sort(refs.begin(), refs.end());
    size_t k = 0;
    for (uint32_t s = 0; s < kCounts.size(); ++s)
      for (uint64_t i = 0; i < kCounts[s]; ++i, ++k)
        ASSERT_EQ(refs[k], (SampleRef{s, i})) << "epoch " << epoch;
  }
}

TEST_P(SampleOrderModes, EpochsAndSeedsGiveDifferentOrders) {
  SampleOrder a(7, kCounts, config()), b(8, kCounts, config());
  const auto a0 = epoch_refs(a, 0), a1 = epoch_refs(a, 1), b0 = epoch_refs(b, 0);
  EXPECT_NE(a0, a1);
  EXPECT_NE(a0, b0);
}

TEST_P(SampleOrderModes, RandomAccessNeedsNoReplay) {
  SampleOrder sequential(3, kCounts, config()), jump(3, kCounts, config());
  std::vector<SampleRef> seq;
  for (uint64_t g = 0; g < 57 * 4; ++g)
    seq.push_back(sequential.at(g));
  for (uint64_t g = 57 * 4; g-- > 0;)
    ASSERT_EQ(jump.at(g), seq[g]) << g;
}

// The sample ids of global batch k, gathered from every rank's micro-batches in rank order.
std::vector<SampleRef> batch_refs(SampleOrder& order, int world, int micro, int64_t B,
                                  int64_t step) {
  std::vector<SampleRef> out;
  for (int r = 0; r < world; ++r) {
    BatchGeometry g{B, world, r, micro};
    for (int m = 0; m < g.accum_steps(); ++m)
      for (int j = 0; j < micro; ++j)
        out.push_back(order.at(g.position(step, m, j)));
  }
  return out;
}

TEST_P(SampleOrderModes, GlobalBatchHasTheSameSampleIdsFor1And2And4Ranks) {
  SampleOrder order(11, kCounts, config());
  const int64_t B = 8;
  for (int64_t step : {0, 3, 7, 20}) {  // 57 samples: steps 7 and 20 cross epochs
    const auto one = batch_refs(order, 1, 8, B, step);
    EXPECT_EQ(batch_refs(order, 2, 4, B, step), one) << "step " << step;
    EXPECT_EQ(batch_refs(order, 4, 2, B, step), one) << "step " << step;
    EXPECT_EQ(batch_refs(order, 4, 1, B, step), one) << "step " << step << ", accumulating";
  }
}

INSTANTIATE_TEST_SUITE_P(Shuffles, SampleOrderModes,
                         ::testing::Values(ShuffleMode::full, ShuffleMode::local),
                         [](const auto& info) { return std::string(shuffle_name(info.param)); });

TEST(SampleOrderLocal, EachWindowReadsOnlyItsShards) {
  const int window = 3;
  SampleOrder order(5, kCounts, ShuffleConfig{ShuffleMode::local, window});
  for (uint64_t epoch = 0; epoch < 4; ++epoch) {
    const auto refs = epoch_refs(order, epoch);
    // Walk the epoch: a window ends once all samples of its shards were visited.
    std::set<uint32_t> shards;
    uint64_t left = 0;
    int windows = 0;
    for (const auto& r : refs) {
      if (left == 0) {
        shards.clear();
        ++windows;
      }
      if (!shards.count(r.shard)) {
        ASSERT_LT(shards.size(), static_cast<size_t>(window))
            << "epoch " << epoch << ": a window touched more than " << window << " shards";
        shards.insert(r.shard);
        left += kCounts[r.shard];
      }
      --left;
    }
    EXPECT_EQ(windows, 3) << "9 shards in windows of 3";
  }
}

TEST(SampleOrderLocal, ShardOrderChangesWithTheEpoch) {
  SampleOrder order(5, kCounts, ShuffleConfig{ShuffleMode::local, 1});
  std::vector<uint32_t> first[2];
  for (uint64_t epoch = 0; epoch < 2; ++epoch)
    for (const auto& r : epoch_refs(order, epoch))
      if (first[epoch].empty() || first[epoch].back() != r.shard) first[epoch].push_back(r.shard);
  ASSERT_EQ(first[0].size(), kCounts.size()) << "window 1: one shard at a time";
  EXPECT_NE(first[0], first[1]);
}

TEST(BatchGeometry, GlobalBatchIsTheSamePositionsForAnyRankCount) {
  auto positions = [](int world, int micro, int64_t B, int64_t step) {
    std::multiset<uint64_t> s;
    for (int r = 0; r < world; ++r) {
      BatchGeometry g{B, world, r, micro};
      for (int m = 0; m < g.accum_steps(); ++m)
        for (int j = 0; j < micro; ++j)
          s.insert(g.position(step, m, j));
    }
    return s;
  };
  const int64_t B = 24;
  for (int64_t step : {0, 1, 17}) {
    const auto ref = positions(1, 24, B, step);
    EXPECT_EQ(positions(2, 12, B, step), ref);
    EXPECT_EQ(positions(4, 3, B, step), ref);  // with accumulation
    EXPECT_EQ(positions(3, 4, B, step), ref);  // odd world size
    EXPECT_EQ(*ref.begin(), static_cast<uint64_t>(step * B));
    EXPECT_EQ(*ref.rbegin(), static_cast<uint64_t>(step * B + B - 1));
  }
}

}  // namespace
}  // namespace dpt::datasets
