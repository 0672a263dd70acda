// What every checkpoint of a training run records about it besides the step: the options, the
// model's tensor layout and the training data's fingerprint ([Checkpoint layout]).
#pragma once

#include <vector>

#include "checkpoint/format.h"
#include "datasets/sample_format.h"
#include "datasets/shard_format.h"
#include "trainer/train_config.h"

namespace dpt::trainer {

// What a checkpoint records of the training data: a hash over the shards in order, their count,
// and their size (tokens of token shards, samples of sample shards).
struct DataFingerprint {
  uint64_t hash = 0;
  int64_t shards = 0;
  int64_t units = 0;
};
// Token shards: each shard's token count and content checksum (round one's fingerprint).
DataFingerprint data_fingerprint(const std::vector<datasets::ShardFacts>& shards);
// Sample shards: each shard's sample count, byte size and sample shape (sample shards carry no
// content checksum; a file rewritten with the same size and shape is not told apart).
DataFingerprint data_fingerprint(const std::vector<datasets::SampleShardFacts>& shards);

// The fields every checkpoint of a run shares: options, model layout, and the training data's
// fingerprint.
checkpoint::CheckpointMeta checkpoint_base(const TrainConfig& cfg, int world_size,
                                           const DataFingerprint& data);

}  // namespace dpt::trainer
