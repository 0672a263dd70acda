// Everything a training run is configured by, and its command line / config file parsing.
#pragma once

#include <cstdint>
#include <string>

#include "datasets/sample_order.h"
#include "trainer/model_config.h"
#include "trainer/optimizer.h"

namespace dpt::trainer {

struct TrainConfig {
  ModelConfig model;
  bool vocab_from_data = true;   // --vocab-size not given: take it from the data
  std::string data;              // --data: shards (a directory, a glob or one file)
  std::string val_data;          // --val-data: held-out shards ("" = no validation)
  int64_t val_every = 0;         // validation loss every N steps (0: only after the last step)
  int64_t val_samples = 128;     // the fixed held-out samples evaluated each time
  std::string shuffle = "full";  // full | local ([Sample order])
  int shuffle_window = 8;        // shards per window of the local shuffle
  int prefetch = 8;              // micro-batches the I/O thread reads ahead
  int64_t data_cache_mb = 512;   // HDF5 chunk cache budget of the reader
  std::string index_cache;       // directory of shard indexes ("" = beside the shards)
  int64_t steps = 200;           // optimizer steps
  int64_t global_batch = 16;     // B: sequences per optimizer step over all ranks
  int micro_batch = 8;           // b: sequences per rank per forward pass
  OptimizerConfig opt;
  uint64_t seed = 1337;
  int threads = 0;             // CPU threads per rank; 0 = cores on the node / ranks on the node
  std::string metrics;         // JSON Lines file written by rank 0 ("" = none)
  int log_every = 10;          // progress line every N steps (and at the first and last)
  int check_sync_every = 100;  // compare parameter hashes across ranks every N steps (0 = only
                               // at start and end)

  // Accumulation steps per optimizer step on each rank: B / (world_size * b).
  int accum_steps(int world_size) const {
    return static_cast<int>(global_batch / (int64_t{world_size} * micro_batch));
  }
  datasets::ShuffleConfig shuffle_config() const {
    return {shuffle == "local" ? datasets::ShuffleMode::local : datasets::ShuffleMode::full,
            shuffle_window};
  }
  // Throws UsageError naming the option to change when sizes are inconsistent.
  void validate(int world_size) const;
};

struct ParsedOptions {
  TrainConfig config;
  bool help = false;
  std::string help_text;
};

// Parses the command line and, with --config FILE, an INI-style file with the same option
// names (without the leading dashes); the command line wins. Throws UsageError.
ParsedOptions parse_train_options(int argc, const char* const* argv);

}  // namespace dpt::trainer
