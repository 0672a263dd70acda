// Everything a training run is configured by, and its command line / config file parsing.
#pragma once

#include <algorithm>
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
  // Checkpoints ([Checkpoint layout]) and resume.
  std::string ckpt_dir;            // "" = no checkpoints
  int64_t ckpt_every = 0;          // save every N steps (0: only after the last step)
  int ckpt_keep = 3;               // newest checkpoints kept (0: all)
  bool ckpt_async = true;          // write in the background while training goes on
  std::string resume = "auto";     // auto | never | PATH of a checkpoint
  std::string nonfinite = "stop";  // stop | skip: a non-finite loss or gradient norm
  int nonfinite_max_skips = 8;     // consecutive skipped steps that stop the run anyway
  int64_t fault_nan_step = 0;      // testing: the last rank's gradient turns NaN at this step
  int64_t fault_kill_in_save = 0;  // testing: the last rank dies halfway through this save
  int64_t stop_at_step = 0;        // end this process after that step, with a checkpoint; the
                                   // schedule still runs to --steps (0: run to --steps)
  // Cluster jobs ([Stop requests], docs/slurm.md).
  std::string device = "auto";          // cpu | cuda | auto
  std::string dtype = "auto";           // fp32 | bf16 | auto (bf16 on cuda, fp32 on cpu)
  std::string preempt_signal = "USR2";  // the signal that means "checkpoint, stop, requeue"
  bool requeue_on_preempt = false;      // requeue the Slurm job after a preemption stop
  int64_t stop_before_limit = 0;        // stop this many seconds before the job's time limit
  // The last step this process trains.
  int64_t last_step() const { return stop_at_step > 0 ? std::min(steps, stop_at_step) : steps; }

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
  // Every option as an INI file that --config reads back (what a checkpoint records).
  std::string to_config_file() const;
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
