// Sample shards from write_sample_shard() back through inspect_sample_shard() (every fact), the
// SampleDataset's reads (pixels scaled to [0, 1], labels, targets, lengths, token ids) across
// block boundaries and under a cache budget that evicts, and the sample index (round trip, a
// changed shard looked up again, a damaged file read as empty).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/rng.h"
#include "datasets/batch.h"
#include "datasets/sample_dataset.h"
#include "datasets/sample_index.h"
#include "datasets/sample_inspect.h"
#include "datasets/sample_writer.h"
#include "storage/io_thread.h"

namespace dpt::datasets {
namespace {

namespace fs = std::filesystem;

class SampleDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dpt-sample-dataset-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // n images 16x12x3 with labels in [0, 5) and class names.
  SampleArrays images(uint64_t n, uint64_t seed) const {
    SampleArrays a;
    a.kind = SampleKind::image;
    a.sample_shape = {16, 12, 3};
    for (uint64_t i = 0; i < n * 16 * 12 * 3; ++i)
      a.images.push_back(static_cast<uint8_t>(random_u64(seed, 1, i)));
    for (uint64_t i = 0; i < n; ++i)
      a.labels.push_back(static_cast<int32_t>(random_u64(seed, 2, i) % 5));
    a.num_classes = 5;
    a.class_names = {"a", "b", "c", "d", "e"};
    return a;
  }
  fs::path dir_;
};

TEST_F(SampleDatasetTest, WrittenShardsReadBackEveryFact) {
  write_sample_shard(path("img.h5"), images(7, 1));
  const SampleShardFacts f = inspect_sample_shard(path("img.h5"));
  EXPECT_EQ(f.kind, SampleKind::image);
  EXPECT_EQ(f.sample_shape, (std::vector<uint64_t>{16, 12, 3}));
  EXPECT_EQ(f.num_samples, 7u);
  EXPECT_EQ(f.task, SampleTask::classify);
  EXPECT_EQ(f.num_classes, 5);
  EXPECT_EQ(f.class_names, (std::vector<std::string>{"a", "b", "c", "d", "e"}));

  SampleArrays t;
  t.kind = SampleKind::text;
  t.sample_shape = {9};
  for (int i = 0; i < 4 * 9; ++i)
    t.tokens.push_back(i % 30);
  t.lengths = {9, 1, 4, 5};
  t.vocab_size = 40;
  t.targets = {1, 2, 3, 4, 5, 6, 7, 8};
  t.num_targets = 2;
  write_sample_shard(path("txt.h5"), t);
  const SampleShardFacts g = inspect_sample_shard(path("txt.h5"));
  EXPECT_EQ(g.kind, SampleKind::text);
  EXPECT_EQ(g.task, SampleTask::regress);
  EXPECT_EQ(g.num_targets, 2u);
  EXPECT_TRUE(g.has_lengths);
  EXPECT_EQ(g.vocab_size, 40);
  // Through the encoding that carries facts between ranks and into the index.
  const SampleShardFacts back = decode_sample_facts(encode_sample_facts(g));
  EXPECT_EQ(back.sample_shape, g.sample_shape);
  EXPECT_EQ(back.vocab_size, g.vocab_size);
  EXPECT_EQ(back.num_targets, g.num_targets);
  EXPECT_EQ(back.path, g.path);
}

TEST_F(SampleDatasetTest, ReadsEverySampleAcrossBlocksAndUnderAnEvictingCache) {
  // 16x12x3 = 576 bytes: a 256 KiB block holds 455 images, so 1000 images span three blocks.
  const SampleArrays a = images(1000, 3), b = images(300, 4);
  write_sample_shard(path("s0.h5"), a);
  write_sample_shard(path("s1.h5"), b);
  std::vector<SampleShardFacts> facts = {inspect_sample_shard(path("s0.h5")),
                                         inspect_sample_shard(path("s1.h5"))};
  storage::IoThread io;
  for (size_t cache : {size_t{64} << 20, size_t{1}}) {  // all cached; one block at a time
    SampleDataset data(io, facts, cache);
    ASSERT_EQ(data.num_samples(), 1300u);
    EXPECT_EQ(data.fields().values, 576u);
    EXPECT_EQ(data.fields().labels, 1u);
    BatchBuffer buf(data.fields(), 1300);
    std::vector<SampleRef> refs;
    for (uint64_t i = 0; i < 1300; ++i)  // backwards: every block is entered from its end
      refs.push_back(data.sample_in_order(1299 - i));
    data.read_samples(refs, buf);
    for (size_t r = 0; r < refs.size(); ++r) {
      const SampleArrays& src = refs[r].shard == 0 ? a : b;
      const size_t i = refs[r].index;
      ASSERT_EQ(*buf.labels(r), src.labels[i]) << "sample " << r;
      for (size_t k = 0; k < 576; k += 37)
        ASSERT_FLOAT_EQ(buf.values(r)[k], src.images[i * 576 + k] / 255.0f) << "sample " << r;
    }
    // In one direction every block is read once: three of s0 and one of s1.
    EXPECT_EQ(data.block_reads(), 4u);
    // Hopping between two blocks rereads them only when the cache cannot hold both: block 0
    // (the last read) is still there, then blocks 1, 0 and 1 again.
    data.read_samples({SampleRef{0, 0}, SampleRef{0, 500}, SampleRef{0, 1}, SampleRef{0, 501}},
                      buf);
    EXPECT_EQ(*buf.labels(3), a.labels[501]);
    EXPECT_EQ(data.block_reads(), cache > 1 ? 4u : 7u);
  }
}

TEST_F(SampleDatasetTest, IndexRoundTripsAndForgetsChangedShards) {
  write_sample_shard(path("a.h5"), images(5, 7));
  const SampleShardFacts f = inspect_sample_shard(path("a.h5"));
  SampleIndex index;
  index.put(f);
  const std::string file = path("idx");
  std::string why;
  ASSERT_TRUE(index.save(file, &why)) << why;
  const SampleIndex loaded = SampleIndex::load(file);
  const auto hit = loaded.find(path("a.h5"), stat_shard(path("a.h5")));
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->num_samples, 5u);
  EXPECT_EQ(hit->class_names, f.class_names);
  FileStamp changed = stat_shard(path("a.h5"));
  changed.mtime_ns += 1;
  EXPECT_FALSE(loaded.find(path("a.h5"), changed).has_value());
  std::ofstream(file, std::ios::trunc) << "dptrain-sample-index 2\n12:garbage";
  EXPECT_EQ(SampleIndex::load(file).size(), 0u);
}

}  // namespace
}  // namespace dpt::datasets
