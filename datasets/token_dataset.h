// A validated dataset of shards: the facts of every shard, its samples in shard order, and a
// reader that lives on the process's I/O thread ([I/O thread]).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "datasets/dataset.h"
#include "datasets/sample_order.h"
#include "datasets/shard_format.h"
#include "datasets/shard_reader.h"
#include "storage/io_thread.h"

namespace dpt::datasets {

// A window of seq_len + 1 tokens as one row of inputs (its first seq_len tokens) and one row
// of targets (its last seq_len: each input's next token).
inline void split_window(const int32_t* window, size_t seq_len, int32_t* inputs, int32_t* targets) {
  std::copy_n(window, seq_len, inputs);
  std::copy_n(window + 1, seq_len, targets);
}

// [Dataset] of token shards: a sample is a window of seq_len + 1 tokens, its first seq_len the
// inputs (SampleFields::tokens) and its last seq_len the targets (SampleFields::labels).
class TokenDataset final : public Dataset {
 public:
  // shards must have passed inspect_shard() and the checks of shard_set.h for seq_len.
  TokenDataset(storage::IoThread& io, std::vector<ShardFacts> shards, int seq_len,
               ReaderOptions reader);
  ~TokenDataset() override;  // closes the files on the I/O thread
  TokenDataset(const TokenDataset&) = delete;
  TokenDataset& operator=(const TokenDataset&) = delete;

  storage::IoThread& io() override { return io_; }
  const std::vector<ShardFacts>& shards() const { return shards_; }
  int seq_len() const { return seq_len_; }
  const std::vector<uint64_t>& samples_per_shard() const override { return samples_per_shard_; }
  uint64_t num_samples() const override { return num_samples_; }
  uint64_t num_tokens() const { return num_tokens_; }
  SampleFields fields() const override {
    return SampleFields{.tokens = size_t(seq_len_), .labels = size_t(seq_len_)};
  }
  uint64_t units_per_sample() const override { return uint64_t(seq_len_) + 1; }

  SampleRef sample_in_order(uint64_t i) const override;
  // The window split into row `row` of out. On the I/O thread only.
  void read_sample(SampleRef ref, BatchBuffer& out, size_t row) override;
  using Dataset::read_samples;
  // The seq_len + 1 tokens of ref into out. On the I/O thread only.
  void read_sample(SampleRef ref, int32_t* out);
  // Reads refs.size() samples into out (refs.size() x (seq_len + 1)), waiting for the I/O
  // thread: for setup and the validation set, not for the step loop.
  void read_samples(const std::vector<SampleRef>& refs, int32_t* out);

 private:
  storage::IoThread& io_;
  std::vector<ShardFacts> shards_;
  int seq_len_;
  std::vector<uint64_t> samples_per_shard_;
  std::vector<uint64_t> starts_;
  uint64_t num_samples_ = 0;
  uint64_t num_tokens_ = 0;
  std::unique_ptr<ShardReader> reader_;  // created and destroyed on the I/O thread
  std::vector<int32_t> window_;          // one window, on the I/O thread
};

}  // namespace dpt::datasets
