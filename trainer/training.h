// The data-parallel training loop: every rank holds a replica, reads its slice of each global
// batch, accumulates gradients over micro-batches, and the ranks average gradients once per
// optimizer step before the identical AdamW update.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/checkpointer.h"
#include "checkpoint/resume.h"
#include "comm/communicator.h"
#include "datasets/dataset.h"
#include "job/stop_request.h"
#include "trainer/replica.h"
#include "trainer/train_config.h"

namespace dpt::trainer {

struct StepRecord {
  int64_t step = 0;  // 1-based optimizer step
  int64_t total_steps = 0;
  double loss = 0;  // mean cross-entropy over the global batch (nats per token)
  double lr = 0;
  double grad_norm = 0;  // global L2 norm of the averaged gradient, before clipping
  int64_t tokens = 0;    // cumulative tokens (positions of the trunk) over all ranks
  double tokens_per_s = 0;
  double step_ms = 0;
  double data_wait_ms = 0;     // data stall: time this step waited for its batches (slowest rank)
  double io_tokens_per_s = 0;  // rank 0's reader: tokens read per second of I/O thread time
  bool has_val = false;        // the validation loss was evaluated after this step
  double val_loss = 0;         // mean over the fixed held-out samples, all ranks
  // Classification: top-1 accuracy of the held-out samples, and after the last step the
  // confusion matrix (row = true class, column = predicted; K x K counts, row-major).
  // Regression: the root mean squared error over every held-out target. NaN when not measured.
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();
  double val_rmse = std::numeric_limits<double>::quiet_NaN();
  std::vector<int64_t> confusion;
  int64_t samples = 0;  // cumulative samples over all ranks
  double samples_per_s = 0;
  bool skipped = false;  // non-finite loss or gradient norm: no update ([Non-finite guard])
  bool saved = false;    // a checkpoint of this step was started
  // A save failed in this step and the run went on (--ckpt-on-error continue): its step.
  int64_t ckpt_failed_step = -1;
  double ckpt_stall_ms = 0;  // time this step spent starting it ([Async save])
  // Rank 0's wait for the gradient exchange after its backward ended ([Gradient buckets]).
  double comm_exposed_ms = 0;
  // Model FLOPs per second over all ranks' peak (NaN when no peak is known).
  double mfu = 0;
  // [Memory plan] measured, the largest over the ranks: the bytes of parameters, gradients and
  // optimizer state, and the process's (or the GPU's) peak so far.
  int64_t mem_state_bytes = 0;
  int64_t mem_peak_bytes = 0;
  // [Bytes sent] by rank 0 in this step (from the end of the step before to the end of this one).
  int64_t sent_bytes = 0;
};

// The data of a run: the training shards and, optionally, held-out shards.
struct TrainData {
  datasets::Dataset& train;
  datasets::Dataset* val = nullptr;
};

struct TrainResult {
  std::vector<StepRecord> steps;
  unsigned stopped_by = 0;  // StopReason bits when a stop request ended the run early
  std::vector<float> final_params;
  uint64_t final_param_hash = 0;
};

using StepCallback = std::function<void(const StepRecord&)>;

// Checkpoints of a run, where to save (null: nowhere) and what to continue from (null: step
// 0), and what may stop it early ([Stop requests]; null: nothing).
// gpu >= 0 trains on the CUDA replica on that device in `precision` (fp32 or bf16), else on the
// CPU.
struct TrainControl {
  checkpoint::Checkpointer* saver = nullptr;
  const checkpoint::ResumeState* resume = nullptr;
  job::StopRequests* stop = nullptr;
  int gpu = -1;
  Precision precision = Precision::fp32;
  ZeroStage zero = ZeroStage::off;  // resolved ([ZeRO])
  double peak_flops = 0;            // one rank's peak FLOP/s for mfu (0: unknown, mfu is NaN)
  std::string host;  // this rank's host, naming its process in --trace (MPI's placement)
  std::function<void(const std::string&)> say;  // rank 0's log line (the replica's description)
};

// Collective. The replica on its processor (control.gpu, control.precision) holding the
// resumed state (control.resume) or fresh parameters (initialized on rank 0, broadcast),
// checked to be identical on every rank. Says what it built through control.say.
std::unique_ptr<Replica> build_replica(const TrainConfig& cfg, comm::Communicator& comm,
                                       const TrainControl& control);

// Trains `model` per cfg on the ranks of comm (cfg must already be validated for
// comm.world_size()) from step control.resume->meta.step + 1 (or 1) up to cfg.steps. on_step
// runs on every rank after each optimizer step. A non-finite loss or gradient norm that stops
// the run throws AgreedFailure (exit code 1) on every rank after on_step has seen the step.
TrainResult train(const TrainConfig& cfg, comm::Communicator& comm, Replica& model, TrainData data,
                  const StepCallback& on_step, const TrainControl& control);
// The same with the replica build_replica makes.
TrainResult train(const TrainConfig& cfg, comm::Communicator& comm, TrainData data,
                  const StepCallback& on_step = {}, const TrainControl& control = {});

// Proves every rank holds the same parameters: the FNV-1a hashes of all ranks' parameters
// must agree (throws RuntimeFailure naming the ranks that differ). Allocates only at
// construction and when reporting a mismatch, so it may run inside the step loop.
class ParamSyncCheck {
 public:
  explicit ParamSyncCheck(comm::Communicator& comm) : comm_(comm), all_(comm.world_size()) {}
  // `when` names the moment in the message: "after broadcast", "after step", "at the end";
  // step is appended when positive. Returns the (common) hash.
  uint64_t check(const float* params, size_t n, const char* when, int64_t step = 0);

 private:
  comm::Communicator& comm_;
  std::vector<uint64_t> all_;
};

}  // namespace dpt::trainer
