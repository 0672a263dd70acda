// The typed configuration of a training run. Every field is set by exactly one entry of the option
// table (train_options.h), which also parses, prints, checks and records it; nothing downstream
// sees an option's text.
#pragma once

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <string>

#include "checkpoint/resume.h"
#include "datasets/sample_order.h"
#include "job/device.h"
#include "trainer/model_config.h"
#include "trainer/optimizer.h"
#include "trainer/zero.h"

namespace dpt::trainer {

// --dtype: the compute precision (fp32 master weights, gradients and AdamW state either way).
enum class Precision { fp32, bf16, automatic };
const char* precision_name(Precision p);  // "fp32", "bf16", "auto"

// --nonfinite: what a non-finite loss or gradient norm does ([Non-finite guard]).
enum class NonFinitePolicy { stop, skip };

// --ckpt-on-error: what a failed save does ([Failed save] in checkpoint/checkpointer.h).
enum class CkptOnError { stop, go_on };

struct TrainConfig {
  ModelConfig model;
  bool vocab_from_data = true;      // --vocab-size not given: take it from the data
  bool task_from_data = true;       // --task not given: lm for token shards, else the samples'
  bool seq_len_given = false;       // --seq-len given (sample shards must agree with it)
  std::string data;                 // --data: shards (a directory, a glob or one file)
  std::string val_data;             // --val-data: held-out shards ("" = no validation)
  int64_t val_every = 0;            // validation loss every N steps (0: only after the last step)
  int64_t val_samples = 128;        // the fixed held-out samples evaluated each time
  datasets::ShuffleConfig shuffle;  // --shuffle and --shuffle-window ([Sample order])
  int prefetch = 8;                 // micro-batches the I/O thread reads ahead
  int64_t data_cache_mb = 512;      // HDF5 chunk cache budget of the reader
  std::string index_cache;          // directory of shard indexes ("" = beside the shards)
  int64_t steps = 200;              // optimizer steps
  int64_t global_batch = 16;        // B: sequences per optimizer step over all ranks
  int micro_batch = 8;              // b: sequences per rank per forward pass
  OptimizerConfig opt;
  double bucket_mb = 25.0;  // [Gradient buckets] of this many MiB (0: one flat exchange)
  ZeroStage zero = ZeroStage::automatic;  // [ZeRO] sharding of optimizer state and gradients
  uint64_t seed = 1337;
  int threads = 0;               // CPU threads per rank; 0 = cores on the node / ranks on the node
  std::string metrics;           // JSON Lines file written by rank 0 ("" = none)
  int log_every = 10;            // progress line every N steps (and at the first and last)
  int check_sync_every = 100;    // compare parameter hashes across ranks every N steps (0 = only
                                 // at start and end)
  std::string trace;             // [Trace file] of the traced steps ("" = none)
  int64_t trace_first_step = 1;  // --trace-steps A-B: the window (last 0 = to the end)
  int64_t trace_last_step = 0;
  double peak_tflops = 0;  // per rank, the denominator of mfu (0: from the GPU table or a
                           // measured CPU GEMM)
  // Checkpoints ([Checkpoint layout]) and resume.
  std::string ckpt_dir;              // "" = no checkpoints
  int64_t ckpt_every = 0;            // save every N steps (0: only after the last step)
  int ckpt_keep = 3;                 // newest checkpoints kept (0: all)
  bool ckpt_async = true;            // write in the background while training goes on
  checkpoint::ResumeRequest resume;  // auto | never | PATH of a checkpoint
  NonFinitePolicy nonfinite = NonFinitePolicy::stop;
  CkptOnError ckpt_on_error = CkptOnError::stop;
  int nonfinite_max_skips = 8;        // consecutive skipped steps that stop the run anyway
  int64_t fault_nan_step = 0;         // testing: the last rank's gradient turns NaN here
  int64_t fault_kill_in_save = 0;     // testing: the last rank dies halfway through this save
  int64_t fault_skip_collective = 0;  // testing: the last rank skips this step's vote all-reduce
  int64_t stop_at_step = 0;           // end this process after that step, with a checkpoint;
                                      // the schedule still runs to --steps (0: to --steps)
  // Cluster jobs ([Stop requests], docs/slurm.md).
  job::Device device = job::Device::automatic;
  Precision dtype = Precision::automatic;  // automatic: bf16 on cuda, fp32 on cpu
  int preempt_signal = SIGUSR2;            // "checkpoint, stop, requeue" (0: none)
  bool requeue_on_preempt = false;         // requeue the Slurm job after a preemption stop
  int64_t stop_before_limit_s = 0;         // stop this many seconds before the time limit
  // [Hang diagnosis]: a collective that has not completed in this time ends the job with a
  // report of the missing or disagreeing ranks (0: no watchdog).
  double collective_timeout_s = 600;

  // The last step this process trains.
  int64_t last_step() const { return stop_at_step > 0 ? std::min(steps, stop_at_step) : steps; }

  size_t bucket_bytes() const { return static_cast<size_t>(bucket_mb * 1024.0 * 1024.0); }
  // Accumulation steps per optimizer step on each rank: B / (world_size * b).
  int accum_steps(int world_size) const {
    return static_cast<int>(global_batch / (int64_t{world_size} * micro_batch));
  }
  // Throws UsageError naming the option to change: each option's own check (the option table),
  // then the checks that span options (model shape, batch divisibility, dtype and device).
  void validate(int world_size) const;
};

}  // namespace dpt::trainer
