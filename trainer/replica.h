// [Replica] One rank's copy of the model and its optimizer state on one processor, as the
// training loop drives it. CpuReplica runs the CPU reference kernels and averages over the MPI
// communicator; the CUDA replica (replica_cuda.cpp) keeps everything on the rank's GPU and
// averages over NCCL. The loop (training.cpp) is the same for both.
//
// A step is, in this order on every rank:
//   zero_grads; forward_backward once per micro-batch; reduce; (the loop's host all-reduce of
//   stop flags and data waits); update.
// The gradient average goes in [Gradient buckets]: the last micro-batch's backward starts each
// bucket as soon as its gradients are final; reduce() starts the rest, then averages the loss,
// in that order ([Collective contract]), and the update waits for all of them. update()
// returns the step's loss and gradient norm on the host and applies clipping and AdamW unless
// either is non-finite ([Non-finite guard]).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "comm/communicator.h"
#include "datasets/batch.h"
#include "trainer/optimizer.h"
#include "trainer/param_layout.h"
#include "trainer/train_config.h"
#include "trainer/zero.h"

namespace dpt::trainer {

struct ReplicaStep {
  StepStats stats;
  double loss = 0;  // mean cross-entropy over the global batch (identical on every rank)
  // How long the step waited for the gradient exchange after its backward ended (on the GPU:
  // how long the compute stream waited for the communication stream).
  double comm_exposed_ms = 0;
};

// [Memory plan] measured on one rank: the bytes its parameters, gradients and optimizer state
// occupy (a gradient whose pages are given back counts its resident pages at their peak), and
// the peak of the whole process (CPU: the resident set's high-water mark, VmHWM) or of the GPU
// (device memory in use, cudaMemGetInfo, at its highest when sampled each step).
struct MemoryUse {
  uint64_t state = 0;
  uint64_t peak = 0;
};

class Replica {
 public:
  virtual ~Replica() = default;

  virtual const ParamLayout& layout() const = 0;
  // "cpu fp32", "cuda:0 bf16 (NVIDIA H100 ...), gradients over nccl 2.28.3", for the log.
  virtual std::string describe() const = 0;

  // The elements of the flat buffer whose AdamW moments this replica holds: all of them, or its
  // [Owned ranges] range under [ZeRO].
  virtual OwnedRange state_range() const = 0;
  // Parameters and AdamW moments from the host (full size; a sharded replica keeps its range
  // of the moments); empty m and v start the moments at zero.
  virtual void set_state(std::span<const float> params, std::span<const float> m,
                         std::span<const float> v) = 0;
  // The current parameters / moments on the host. The CUDA replica copies them back and waits;
  // the spans stay valid until the next call that changes the state.
  // host_m() and host_v() hold the elements of state_range() only.
  virtual std::span<const float> host_params() = 0;
  virtual std::span<const float> host_m() = 0;
  virtual std::span<const float> host_v() = 0;

  virtual void zero_grads() = 0;
  // Adds d(loss_scale * mean loss of the micro-batch)/d(params) into the gradient and the
  // micro-batch's mean loss into the step's loss sum ([Batch]: the fields the task reads).
  // On the step's last micro-batch, backward starts the gradient buckets it finishes; inner
  // micro-batches exchange nothing.
  virtual void forward_backward(const datasets::Batch& batch, double loss_scale,
                                bool last_micro_batch) = 0;
  // Testing (--fault-nan-step): the first gradient element becomes NaN.
  virtual void poison_grad() = 0;
  // Starts the gradient buckets not started in backward, then the average of the step's mean
  // loss, over the replica's communicator (the MPI communicator it was made with; the CUDA
  // replica's own NCCL communicator over the same ranks).
  virtual void reduce() = 0;
  virtual ReplicaStep update(int64_t step) = 0;

  // What this rank holds now and held at most, measured (after reduce()).
  virtual MemoryUse memory_use() = 0;
  // [Bytes sent] by this rank through the communicators the replica uses (the host one it was
  // made with, which the loop shares, and the GPU's NCCL one), since it was made.
  virtual uint64_t bytes_sent() const = 0;

  // Mean loss of a batch without gradients (validation). For classification and regression,
  // outputs (when not null) receives the head's [rows, K] logits or predictions.
  virtual double evaluate(const datasets::Batch& batch, float* outputs) = 0;
};

// The CPU reference replica for micro-batches of up to max_batch sequences, averaging over
// `comm` (which must outlive it), sharded as `zero` says ([ZeRO]).
std::unique_ptr<Replica> make_cpu_replica(const TrainConfig& cfg, int max_batch,
                                          comm::Communicator& comm,
                                          ZeroStage zero = ZeroStage::off);

// The CUDA replica on device `gpu` in `precision` (fp32 or bf16, not automatic); collective over
// `mpi` (it builds the NCCL communicator), sharded as `zero` says. Throws UsageError in a build
// without CUDA.
std::unique_ptr<Replica> make_cuda_replica(const TrainConfig& cfg, int max_batch, int gpu,
                                           Precision precision, comm::Communicator& mpi,
                                           ZeroStage zero = ZeroStage::off);

}  // namespace dpt::trainer
