// The steps of one run of bin/train, in the order train_main.cpp takes them: parse, place, open
// the data, resume, open the outputs, build the replica and train, finish. Each step is
// collective where it says so, and every failure in it is agreed by all ranks ([Agreed failure]),
// so a bad option or a missing file on one node ends every rank with one message.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "checkpoint/checkpointer.h"
#include "checkpoint/resume.h"
#include "comm/communicator.h"
#include "comm/mpi_session.h"
#include "datasets/sample_dataset.h"
#include "datasets/token_dataset.h"
#include "job/gpu_placement.h"
#include "job/slurm_env.h"
#include "job/stop_request.h"
#include "storage/io_thread.h"
#include "trainer/checkpoint_meta.h"
#include "trainer/data_setup.h"
#include "trainer/memory_plan.h"
#include "trainer/metrics.h"
#include "trainer/train_config.h"
#include "trainer/training.h"

namespace dpt::trainer {

// Rank 0's log: "train: <line>", flushed at once; other ranks say nothing.
class RunLog {
 public:
  explicit RunLog(int rank) : rank_(rank) {}
  void say(const std::string& line) const;
  std::function<void(const std::string&)> sayer() const {
    return [this](const std::string& line) { say(line); };
  }
  bool speaks() const { return rank_ == 0; }

 private:
  int rank_;
};

// Parse (collective): the options on every rank, validated for this world size. nullopt after
// --help, which rank 0 has printed.
std::optional<TrainConfig> parse_run(comm::Communicator& world, int argc, const char* const* argv);

// Where the ranks run: the Slurm job, the processor and precision, CPU threads per rank.
struct RunPlacement {
  job::SlurmEnv slurm;
  job::DeviceChoice device;
  Precision precision = Precision::fp32;  // resolved: fp32 or bf16
  ZeroStage zero = ZeroStage::off;        // resolved: 0, 1 or 2
  int threads = 1;
  double peak_flops = 0;  // one rank's peak FLOP/s, the denominator of mfu (0: unknown)
};

// Place (collective): Slurm's view checked against MPI's, the node description, the device and
// GPU mapping, the precision, the time-limit watch (rank 0), the CPU threads and the peak FLOP
// rate for mfu; logged.
RunPlacement place_run(comm::Communicator& world, const comm::Placement& where,
                       const TrainConfig& cfg, job::StopRequests& stop, const RunLog& log);

// Open the data (collective): both shard sets indexed and checked against the model, and the
// readers over them. cfg is completed here: token shards give the vocabulary (unless
// --vocab-size was given); sample shards give the task (unless --task was given, which they must
// agree with), the input's kind and shape, the sequence length and the classes or targets.
class RunData {
 public:
  RunData(comm::Communicator& world, storage::IoThread& io, TrainConfig& cfg);
  TrainData view();
  bool samples() const { return train_samples.has_value(); }
  // What checkpoints record of the training data ([Checkpoint layout]).
  DataFingerprint fingerprint() const;

  // Token shards:
  IndexedShards train_index;
  std::optional<IndexedShards> val_index;
  std::optional<datasets::TokenDataset> train;
  std::optional<datasets::TokenDataset> val;
  // Sample shards:
  std::optional<IndexedSamples> train_samples, val_samples;
  std::optional<datasets::SampleDataset> train_set, val_set;

 private:
  void open_tokens(comm::Communicator& world, storage::IoThread& io, TrainConfig& cfg);
  void open_samples(comm::Communicator& world, storage::IoThread& io, TrainConfig& cfg);
};

// Plan (collective): the [Memory plan] of a rank, logged, and checked against its share of the
// node's available memory (CPU) or its GPU's free memory: a run that cannot fit stops on every
// rank with exit 2 and the options that would make it fit, before anything large is allocated.
MemoryPlan plan_run_memory(comm::Communicator& world, const comm::Placement& where,
                           const TrainConfig& cfg, const RunPlacement& placed, const RunLog& log);

// Resume (collective): the checkpoint --resume names, checked against this run's options
// (the option table's must_match entries), its tensors and its data, and loaded on every rank;
// nullopt for a fresh start.
std::optional<checkpoint::ResumeState> resume_run(comm::Communicator& world, storage::IoThread& io,
                                                  const TrainConfig& cfg, const RunData& data,
                                                  const RunLog& log);

// The outputs of a run: the metrics file (rank 0) and the checkpointer. Opened once every check
// has passed, so that a failed start leaves an existing metrics file alone.
struct RunOutputs {
  std::optional<MetricsWriter> metrics;
  std::optional<checkpoint::Checkpointer> saver;
};
// Collective.
void open_outputs(comm::Communicator& world, storage::IoThread& io, const TrainConfig& cfg,
                  const RunData& data, const checkpoint::ResumeState* resumed, const RunLog& log,
                  RunOutputs& out);

// The banner: ranks, model, batch, data and validation set (rank 0).
void print_banner(const TrainConfig& cfg, int world_size, const comm::Placement& where,
                  const RunPlacement& placed, RunData& data);

// Finish (collective): the last line of a run that trained to its end or to --stop-at-step, or,
// after a stop request, the stop with its checkpoint and the requeue ([Stop requests]). Returns
// the exit code.
int finish_run(comm::Communicator& world, const comm::Placement& where, const TrainConfig& cfg,
               const RunPlacement& placed, job::StopRequests& stop, const TrainResult& result,
               RunOutputs& out);

// Exit code of a run stopped by a stop request with its state saved: EX_TEMPFAIL, "try
// again": the work is not done, and running the same command continues it.
inline constexpr int kExitStoppedEarly = 75;

}  // namespace dpt::trainer
