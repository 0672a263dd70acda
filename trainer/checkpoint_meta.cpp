// The run's part of the checkpoint metadata.
#include "trainer/checkpoint_meta.h"

#include "common/hash.h"
#include "trainer/param_layout.h"
#include "trainer/train_options.h"

namespace dpt::trainer {

checkpoint::CheckpointMeta checkpoint_base(const TrainConfig& cfg, int world_size,
                                           const std::vector<datasets::ShardFacts>& train_shards) {
  checkpoint::CheckpointMeta m;
  m.world_size = world_size;
  m.total_steps = cfg.steps;
  m.seed = cfg.seed;
  m.config = to_config_text(cfg);
  m.vocab_size = cfg.model.vocab_size;
  m.seq_len = cfg.model.seq_len;
  m.d_model = cfg.model.d_model;
  m.n_layer = cfg.model.n_layer;
  m.n_head = cfg.model.n_head;
  m.global_batch = cfg.global_batch;
  m.shuffle = datasets::shuffle_name(cfg.shuffle.mode);
  m.shuffle_window = cfg.shuffle.window_shards;
  uint64_t h = fnv1a64("dpt-data", 8);
  for (const auto& f : train_shards) {
    const uint64_t fields[2] = {f.num_tokens, f.checksum};
    h = fnv1a64(fields, sizeof(fields), h);
    m.data_tokens += static_cast<int64_t>(f.num_tokens);
  }
  m.data_fingerprint = h;
  m.data_shards = static_cast<int64_t>(train_shards.size());
  const ParamLayout layout(cfg.model);
  m.param_count = static_cast<int64_t>(layout.total());
  m.tensors = layout.tensors();
  return m;
}

}  // namespace dpt::trainer
