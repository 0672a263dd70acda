// [Memory plan] What one rank of a run will hold, in bytes, from its configuration alone, before
// anything large is allocated: parameters, gradients, optimizer state, activations and buffers,
// on the host for the CPU path and on the GPU for the CUDA path. The run compares it with what
// the node (or the GPU) has free and refuses, with the options that would make it fit, a run
// that cannot; the metrics carry the measured peak beside it.
//
// CPU, fp32, Psi parameters, N ranks, owned range Psi/N ([ZeRO]):
//   stage 0: parameters 4 Psi, gradients 4 Psi, AdamW moments 8 Psi             = 16 Psi
//   stage 1: 4 Psi + 4 Psi + 8 Psi / N
//   stage 2: 4 Psi + gradient of the owned range 4 Psi / N + 8 Psi / N, plus the gradient
//            backward holds until its buckets are reduced (the tied token embedding, written
//            first and reduced last, and the buckets in flight)
// GPU, bf16 compute: an fp32 master copy and a bf16 compute copy of the parameters, fp32
// gradients, fp32 moments (fp32 compute: no bf16 copy).
#pragma once

#include <cstdint>
#include <string>

#include "trainer/train_config.h"
#include "trainer/zero.h"

namespace dpt::trainer {

struct MemoryPlan {
  bool gpu = false;
  uint64_t params = 0;       // every copy of the parameters this rank holds
  uint64_t grads = 0;        // gradient memory at its peak
  uint64_t optimizer = 0;    // AdamW moments
  uint64_t activations = 0;  // forward activations and backward scratch of one micro-batch
  uint64_t buffers = 0;      // collectives' scratch, checkpoint snapshot, data reader's cache
  uint64_t state() const { return params + grads + optimizer; }
  uint64_t total() const { return state() + activations + buffers; }
  // "params 1.2 GB, grads ..., total ..." for the log.
  std::string describe() const;
};

// The plan of one rank (the largest owned range) of `world` ranks training cfg.model, with
// `zero` resolved and `precision` the GPU's compute type (fp32 on the CPU).
MemoryPlan plan_memory(const TrainConfig& cfg, int world, ZeroStage zero, bool gpu,
                       Precision precision, bool checkpoints);

// Activation and scratch elements of the CPU model (Gpt<T>) for micro-batches of `batch`: what
// its constructor allocates (a test holds the two together). fused: the blocks keep a
// log-sum-exp per query row instead of the T x T probabilities ([Attention choice]).
uint64_t cpu_activation_elements(const ModelConfig& model, int batch, bool fused);

// The peak resident set of this process (VmHWM of /proc/self/status), in bytes; 0 where the
// kernel does not say.
uint64_t peak_resident_bytes();

// Bytes of host memory this process may still use: the kernel's MemAvailable, lowered to the
// tightest limit less usage of this process's memory control group and the groups above it
// (/proc/self/cgroup; cgroup v2 or v1), where one is set.
uint64_t host_memory_available();

// Throws UsageError when `plan` needs more than `available` bytes (one rank's share of the
// node, or its GPU's free memory): the message names each part and what to change, with the
// figures those changes would give.
void check_memory_fits(const MemoryPlan& plan, uint64_t available, const std::string& where,
                       const TrainConfig& cfg, int world, ZeroStage zero, Precision precision,
                       bool checkpoints);

}  // namespace dpt::trainer
