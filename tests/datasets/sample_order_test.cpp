// [Sample order]: epochs are permutations, the order depends on (seed, epoch) only, and the
// rank slices of a global batch are the same samples whatever the number of ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "common/errors.h"
#include "datasets/byte_file.h"
#include "datasets/sample_order.h"
#include "datasets/window_loader.h"

namespace dpt::datasets {
namespace {

TEST(SampleOrder, EachEpochIsAPermutation) {
  SampleOrder order(7, 1001);
  for (uint64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<uint64_t> seen;
    for (uint64_t i = 0; i < 1001; ++i)
      seen.push_back(order.at(epoch * 1001 + i));
    std::sort(seen.begin(), seen.end());
    for (uint64_t i = 0; i < 1001; ++i)
      ASSERT_EQ(seen[i], i);
  }
}

TEST(SampleOrder, EpochsDifferAndSeedsDiffer) {
  SampleOrder a(7, 500), b(8, 500);
  int same_epoch = 0, same_seed = 0;
  for (uint64_t i = 0; i < 500; ++i) {
    same_epoch += a.at(i) == a.at(500 + i);
  }
  for (uint64_t i = 0; i < 500; ++i)
    same_seed += a.at(i) == b.at(i);
  EXPECT_LT(same_epoch, 20);
  EXPECT_LT(same_seed, 20);
}

TEST(SampleOrder, RandomAccessNeedsNoReplay) {
  SampleOrder sequential(3, 97), jump(3, 97);
  std::vector<uint64_t> seq;
  for (uint64_t g = 0; g < 97 * 4; ++g)
    seq.push_back(sequential.at(g));
  for (uint64_t g = 97 * 4; g-- > 0;)
    ASSERT_EQ(jump.at(g), seq[g]) << g;
}

std::multiset<uint64_t> step_samples(int world, int micro, int64_t B, int64_t step) {
  std::multiset<uint64_t> s;
  for (int r = 0; r < world; ++r) {
    BatchGeometry g{B, world, r, micro};
    for (int m = 0; m < g.accum_steps(); ++m)
      for (int j = 0; j < micro; ++j)
        s.insert(g.position(step, m, j));
  }
  return s;
}

TEST(BatchGeometry, GlobalBatchIsTheSameSetForAnyRankCount) {
  const int64_t B = 24;
  for (int64_t step : {0, 1, 17}) {
    const auto ref = step_samples(1, 24, B, step);
    EXPECT_EQ(step_samples(2, 12, B, step), ref);
    EXPECT_EQ(step_samples(4, 3, B, step), ref);  // with accumulation
    EXPECT_EQ(step_samples(3, 4, B, step), ref);  // odd world size
    EXPECT_EQ(*ref.begin(), static_cast<uint64_t>(step * B));
    EXPECT_EQ(*ref.rbegin(), static_cast<uint64_t>(step * B + B - 1));
  }
}

TEST(WindowLoader, TargetsAreInputsShiftedByOne) {
  std::vector<uint8_t> bytes(200);
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<uint8_t>(i);
  ByteFile data(bytes, "ramp");
  WindowLoader loader(data, 9, BatchGeometry{4, 1, 0, 2}, 1);
  EXPECT_EQ(loader.num_samples(), (200u - 1) / 9);
  std::vector<int32_t> in(18), tgt(18);
  loader.load(0, 1, in.data(), tgt.data());
  for (int j = 0; j < 2; ++j) {
    EXPECT_EQ(in[j * 9] % 9, 0) << "windows start at multiples of seq_len";
    for (int t = 0; t < 9; ++t)
      EXPECT_EQ(tgt[j * 9 + t], in[j * 9 + t] + 1);
  }
}

TEST(WindowLoader, DataShorterThanOneSampleIsAUsageError) {
  ByteFile data(std::vector<uint8_t>(16, 'a'), "tiny");
  EXPECT_THROW(WindowLoader(data, 16, BatchGeometry{1, 1, 0, 1}, 1), UsageError);
  EXPECT_NO_THROW(WindowLoader(data, 15, BatchGeometry{1, 1, 0, 1}, 1));
}

TEST(ByteFile, MissingFileIsAUsageErrorNamingThePath) {
  try {
    ByteFile::load("/nonexistent/corpus.txt");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/corpus.txt"), std::string::npos);
  }
}

}  // namespace
}  // namespace dpt::datasets
