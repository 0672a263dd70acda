// [Dataset] of sample shards ([Sample format]): images, series or texts with their labels or
// targets, read in blocks of consecutive samples that an LRU cache keeps within a byte budget,
// so that the shuffled order of [Sample order] reads each block from disk once while it fits.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "datasets/dataset.h"
#include "datasets/sample_format.h"
#include "datasets/shard_index.h"
#include "storage/h5.h"

namespace dpt::datasets {

// The facts every shard of one dataset must share to be read as one: kind, sample shape, task,
// classes or targets, lengths. Throws UsageError naming the first shard that differs from the
// first one and `option`. Returns the common facts (num_classes and vocab_size: the largest).
SampleShardFacts common_sample_facts(const std::vector<SampleShardFacts>& shards,
                                     const std::string& option);

class SampleDataset final : public Dataset {
 public:
  // shards must have passed inspect_sample_shard() and common_sample_facts(). cache_bytes:
  // the budget of decoded blocks held in memory.
  SampleDataset(storage::IoThread& io, std::vector<SampleShardFacts> shards, size_t cache_bytes);
  ~SampleDataset() override;  // closes the files on the I/O thread
  SampleDataset(const SampleDataset&) = delete;
  SampleDataset& operator=(const SampleDataset&) = delete;

  storage::IoThread& io() override { return io_; }
  const std::vector<SampleShardFacts>& shards() const { return shards_; }
  const SampleShardFacts& facts() const { return common_; }
  const std::vector<uint64_t>& samples_per_shard() const override { return samples_per_shard_; }
  uint64_t num_samples() const override { return num_samples_; }
  SampleFields fields() const override { return fields_; }
  uint64_t units_per_sample() const override { return 1; }
  SampleRef sample_in_order(uint64_t i) const override;
  void read_sample(SampleRef ref, BatchBuffer& out, size_t row) override;

  // Reads of blocks from the files so far, and the blocks the cache holds (I/O thread).
  uint64_t block_reads() const { return block_reads_; }

 private:
  struct Block {
    std::vector<uint8_t> inputs;  // images uint8, series float, text int32, as read
    std::vector<int32_t> labels, lengths;
    std::vector<float> targets;
    size_t bytes = 0;
    std::list<uint64_t>::iterator lru;  // position in lru_ (front: most recent)
  };
  struct OpenShard {
    storage::H5File file;
    storage::H5Dataset inputs, labels, targets, lengths;
  };
  const Block& block(uint32_t shard, uint64_t index);  // loads it if absent (I/O thread)
  OpenShard& open(uint32_t shard);

  storage::IoThread& io_;
  std::vector<SampleShardFacts> shards_;
  SampleShardFacts common_;
  SampleFields fields_;
  size_t input_bytes_per_sample_ = 0;
  uint64_t block_samples_ = 0;
  size_t cache_bytes_;
  std::vector<uint64_t> samples_per_shard_;
  std::vector<uint64_t> starts_;
  uint64_t num_samples_ = 0;
  // On the I/O thread:
  std::vector<std::unique_ptr<OpenShard>> open_;
  ShardWatch watch_{0};                         // [Shards in training]
  std::unordered_map<uint64_t, Block> blocks_;  // key: shard << 40 | block index
  std::list<uint64_t> lru_;
  size_t cached_bytes_ = 0;
  uint64_t block_reads_ = 0;
};

}  // namespace dpt::datasets
