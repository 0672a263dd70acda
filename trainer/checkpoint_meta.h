// What every checkpoint of a training run records about it besides the step: the options, the
// model's tensor layout and the training data's fingerprint ([Checkpoint layout]).
#pragma once

#include <vector>

#include "checkpoint/format.h"
#include "datasets/shard_format.h"
#include "trainer/train_config.h"

namespace dpt::trainer {

// The fields every checkpoint of a run shares: options, model layout, and the training data's
// fingerprint (each shard's length and checksum, in order).
checkpoint::CheckpointMeta checkpoint_base(const TrainConfig& cfg, int world_size,
                                           const std::vector<datasets::ShardFacts>& train_shards);

}  // namespace dpt::trainer
