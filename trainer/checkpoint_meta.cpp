// The run's part of the checkpoint metadata.
#include "trainer/checkpoint_meta.h"

#include "common/hash.h"
#include "trainer/param_layout.h"
#include "trainer/train_options.h"

namespace dpt::trainer {

DataFingerprint data_fingerprint(const std::vector<datasets::ShardFacts>& shards) {
  DataFingerprint d;
  d.hash = fnv1a64("dpt-data", 8);
  for (const auto& f : shards) {
    const uint64_t fields[2] = {f.num_tokens, f.checksum};
    d.hash = fnv1a64(fields, sizeof(fields), d.hash);
    d.units += static_cast<int64_t>(f.num_tokens);
  }
  d.shards = static_cast<int64_t>(shards.size());
  return d;
}

DataFingerprint data_fingerprint(const std::vector<datasets::SampleShardFacts>& shards) {
  DataFingerprint d;
  d.hash = fnv1a64("dpt-samples", 11);
  for (const auto& f : shards) {
    const uint64_t fields[3] = {f.num_samples, f.file_size, static_cast<uint64_t>(f.kind)};
    d.hash = fnv1a64(fields, sizeof(fields), d.hash);
    d.hash = fnv1a64(f.sample_shape.data(), f.sample_shape.size() * sizeof(uint64_t), d.hash);
    d.units += static_cast<int64_t>(f.num_samples);
  }
  d.shards = static_cast<int64_t>(shards.size());
  return d;
}

checkpoint::CheckpointMeta checkpoint_base(const TrainConfig& cfg, int world_size,
                                           const DataFingerprint& data) {
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
  m.data_fingerprint = data.hash;
  m.data_shards = data.shards;
  m.data_tokens = data.units;  // samples, for sample shards
  const ParamLayout layout(cfg.model);
  m.param_count = static_cast<int64_t>(layout.total());
  m.tensors = layout.tensors();
  return m;
}

}  // namespace dpt::trainer
