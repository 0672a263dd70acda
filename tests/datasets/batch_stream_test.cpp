// The prefetching reader on real HDF5 shards: windows hold the right tokens, rank slices put
// together are the one-rank batch, a stream restarted at step k equals the uninterrupted one,
// a shard written by h5py reads back token-exact, and an id that went bad after indexing is
// caught as it is read.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <map>

#include "common/errors.h"
#include "datasets/batch_stream.h"
#include "tests/test_shards.h"

namespace dpt::datasets {

using storage::IoThread;
namespace {

constexpr int T = 13;

class BatchStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Odd sizes: partial last chunks, samples that straddle chunk boundaries.
    for (int s = 0; s < 5; ++s) {
      tokens_.push_back(testing::markov_tokens(700 + 131 * s, 100 + s));
      ShardWriterOptions opt;
      opt.chunk_tokens = 97;
      opt.gzip_level = s % 2 ? 1 : 0;
      opt.dtype = s == 3 ? TokenType::u32 : TokenType::u16;
      testing::write_shard(dir_.file("shard-" + std::to_string(s) + ".h5"), tokens_.back(), opt);
    }
  }
  std::unique_ptr<TokenDataset> open(bool local) {
    return testing::open_dataset(io_, dir_.path(), T, 256, local, 2);
  }
  SampleOrder order(const TokenDataset& d, bool local) {
    return SampleOrder(9, d.samples_per_shard(),
                       ShuffleConfig{local ? ShuffleMode::local : ShuffleMode::full, 2});
  }
  // Tokens of `steps` steps, every rank's micro-batches in rank order: inputs then the last
  // target of each row.
  std::vector<int32_t> read_steps(TokenDataset& d, bool local, int world, int micro, int64_t B,
                                  int64_t first, int64_t steps) {
    std::vector<std::unique_ptr<BatchStream>> ranks;
    for (int r = 0; r < world; ++r)
      ranks.push_back(std::make_unique<BatchStream>(d, order(d, local),
                                                    BatchGeometry{B, world, r, micro}, first, 3));
    std::vector<int32_t> out;
    for (int64_t k = 0; k < steps; ++k)
      for (auto& s : ranks)
        for (int m = 0; m < static_cast<int>(B / (world * micro)); ++m) {
          const auto mb = s->next();
          EXPECT_EQ(mb.step, first + k);
          EXPECT_EQ(mb.micro, m);
          for (int j = 0; j < micro; ++j) {
            out.insert(out.end(), mb.inputs + j * T, mb.inputs + (j + 1) * T);
            out.push_back(mb.targets[j * T + T - 1]);
          }
        }
    return out;
  }

  testing::TempDir dir_{"dpt-batch-stream"};
  IoThread io_;
  std::vector<std::vector<uint32_t>> tokens_;
};

TEST_F(BatchStreamTest, MicroBatchesHoldTheWindowsOfTheirSamples) {
  for (bool local : {false, true}) {
    auto d = open(local);
    SampleOrder ref = order(*d, local);
    const BatchGeometry geo{6, 2, 1, 3};  // rank 1 of 2, 3 per micro-batch
    BatchStream stream(*d, order(*d, local), geo, 0, 4);
    for (int64_t step = 0; step < 30; ++step) {  // several epochs
      const auto mb = stream.next();
      for (int j = 0; j < 3; ++j) {
        const SampleRef s = ref.at(geo.position(step, 0, j));
        const auto& src = tokens_[s.shard];
        for (int t = 0; t < T; ++t) {
          ASSERT_EQ(mb.inputs[j * T + t], static_cast<int32_t>(src[s.index * T + t]));
          ASSERT_EQ(mb.targets[j * T + t], static_cast<int32_t>(src[s.index * T + t + 1]));
        }
      }
    }
  }
}

TEST_F(BatchStreamTest, RankSlicesTogetherAreTheOneRankBatchFor1And2And4Ranks) {
  for (bool local : {false, true}) {
    auto d = open(local);
    const auto one = read_steps(*d, local, 1, 8, 8, 0, 12);
    EXPECT_EQ(read_steps(*d, local, 2, 4, 8, 0, 12), one);
    EXPECT_EQ(read_steps(*d, local, 4, 2, 8, 0, 12), one);
    EXPECT_EQ(read_steps(*d, local, 4, 1, 8, 0, 12), one) << "with accumulation";
  }
}

TEST_F(BatchStreamTest, StreamRestartedAtStepKEqualsTheUninterruptedStream) {
  for (bool local : {false, true}) {
    auto d = open(local);
    const auto all = read_steps(*d, local, 2, 2, 8, 0, 20);
    const auto tail = read_steps(*d, local, 2, 2, 8, 13, 7);
    ASSERT_EQ(tail.size() * 20, all.size() * 7);
    EXPECT_TRUE(std::equal(tail.begin(), tail.end(), all.end() - tail.size()));
  }
}

// Rewrites shard 2 with ids beyond the vocabulary but the same length; with keep_stamp, its
// size and modification time are made the indexed ones again (a change the stamp cannot see).
void rewrite_shard_2(const std::string& path, std::vector<uint32_t> bad, bool keep_stamp) {
  struct stat before {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  for (size_t i = 0; i < bad.size(); i += 5)
    bad[i] = 300;
  ShardWriterOptions opt;
  opt.chunk_tokens = 97;
  opt.vocab_size = 512;
  testing::write_shard(path, bad, opt);
  if (!keep_stamp) return;
  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  ASSERT_EQ(after.st_size, before.st_size);
  const struct timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

// The message of the UsageError that 100 batches of the dataset end with ("" if none does).
std::string first_read_error(Dataset& d, SampleOrder order) {
  BatchStream stream(d, std::move(order), BatchGeometry{8, 1, 0, 8}, 0, 2);
  try {
    for (int i = 0; i < 100; ++i)
      stream.next();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

// [Shards in training]: a shard rewritten under a running job ends it by name at the next read.
TEST_F(BatchStreamTest, AShardChangedAfterIndexingIsCaughtAtTheNextRead) {
  auto d = open(false);
  rewrite_shard_2(dir_.file("shard-2.h5"), tokens_[2], /*keep_stamp=*/false);
  const std::string msg = first_read_error(*d, order(*d, false));
  ASSERT_FALSE(msg.empty()) << "no read met shard 2";
  EXPECT_NE(msg.find("shard-2.h5 changed while training (rewritten"), std::string::npos) << msg;
}

// The same change behind the indexed size and time: the ids are checked again as they are read.
TEST_F(BatchStreamTest, AnIdThatWentBadAfterIndexingIsCaughtAsItIsRead) {
  auto d = open(false);
  rewrite_shard_2(dir_.file("shard-2.h5"), tokens_[2], /*keep_stamp=*/true);
  const std::string msg = first_read_error(*d, order(*d, false));
  ASSERT_FALSE(msg.empty()) << "no read met shard 2";
  EXPECT_NE(msg.find("shard-2.h5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("300"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vocabulary size 256"), std::string::npos) << msg;
}

TEST(H5pyShard, Uint16ChunkedGzipShardWrittenByH5pyReadsBackTokenExact) {
  testing::TempDir dir("dpt-h5py");
  const std::string shard = dir.file("from_h5py.h5"), expect = dir.file("expect.u16");
  const char* python = std::getenv("PYTHON") ? std::getenv("PYTHON") : "/usr/bin/python3";
  const std::string script =
      "import sys, numpy as np, h5py\n"
      "rng = np.random.default_rng(7)\n"
      "tok = rng.integers(0, 50257, size=100003, dtype=np.uint16)\n"
      "with h5py.File(sys.argv[1], 'w') as f:\n"
      "    f.create_dataset('tokens', data=tok, chunks=(4099,), compression='gzip')\n"
      "    f.create_dataset('doc_offsets', data=np.array([0, 17, 5000], dtype=np.int64))\n"
      "    f.attrs['vocab_size'] = 50257\n"
      "    f.attrs['format_version'] = 1\n"
      "tok.astype('<u2').tofile(sys.argv[2])\n";
  const std::string py = dir.file("write.py");
  std::ofstream(py) << script;
  const std::string cmd = std::string(python) + " " + py + " " + shard + " " + expect;
  ASSERT_EQ(std::system(cmd.c_str()), 0)
      << cmd << " failed: Debian's python3-h5py is needed (scripts/install-deps.sh)";
  std::vector<uint16_t> want(100003);
  std::ifstream(expect, std::ios::binary)
      .read(reinterpret_cast<char*>(want.data()), static_cast<std::streamsize>(want.size() * 2));

  IoThread io;
  const int seq = 1000;
  auto d = testing::open_dataset(io, shard, seq, 50257);
  ASSERT_EQ(d->shards()[0].dtype, TokenType::u16);
  ASSERT_EQ(d->shards()[0].num_docs, 3u);
  ASSERT_EQ(d->num_samples(), (100003u - 1) / seq);
  std::vector<SampleRef> refs;
  for (uint64_t i = 0; i < d->num_samples(); ++i)
    refs.push_back(d->sample_in_order(i));
  std::vector<int32_t> got(refs.size() * (seq + 1));
  d->read_samples(refs, got.data());
  for (size_t i = 0; i < refs.size(); ++i)
    for (int t = 0; t <= seq; ++t)
      ASSERT_EQ(got[i * (seq + 1) + t], want[i * seq + t]) << "sample " << i << " token " << t;
}

}  // namespace
}  // namespace dpt::datasets
