// The optimizer step: learning-rate schedule, global gradient-norm clipping and AdamW over the
// flat parameter buffer, tensor by tensor so that the weight decay rule applies per tensor.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "trainer/param_layout.h"

namespace dpt::trainer {

struct OptimizerConfig {
  double lr = 1e-3;           // peak learning rate
  double min_lr_ratio = 0.1;  // the cosine decays to lr * min_lr_ratio at the last step
  int64_t warmup_steps = 0;   // linear warmup from lr / warmup_steps to lr
  int64_t total_steps = 1;    // the schedule's length (--steps)
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;  // decoupled; applied to tensors that decay ([Weight decay rule])
  double grad_clip = 1.0;     // max global L2 norm of the gradient; 0 turns clipping off
};

// Learning rate of 1-based optimizer step `step`: linear warmup over warmup_steps (step s
// gets lr * s / warmup_steps), then cosine decay from lr to lr * min_lr_ratio, reached at
// total_steps.
double learning_rate(const OptimizerConfig& cfg, int64_t step);

// The factor that scales the gradient to norm grad_clip when its norm exceeds it (else 1).
double clip_factor(double grad_norm, double grad_clip);

struct StepStats {
  double lr = 0;
  double grad_norm = 0;  // before clipping
  double clip = 1;       // factor applied to the gradient
  bool skipped = false;  // the gradient norm was not finite: nothing was updated
};

// AdamW over elements [lo, hi) of the flat buffer (all of it, or a rank's [Owned ranges] range
// under [ZeRO]); its moments cover that range only. A range may start or end inside a tensor:
// each element gets its own tensor's weight decay ([Weight decay rule]).
class AdamW {
 public:
  AdamW(const OptimizerConfig& cfg, const ParamLayout& layout);
  AdamW(const OptimizerConfig& cfg, const ParamLayout& layout, size_t lo, size_t hi);

  // One update of the whole buffer (the range must be all of it) with the already averaged
  // gradient, whose norm it computes. `step` is 1-based. A non-finite gradient norm leaves
  // parameters and moments untouched and returns skipped ([Non-finite guard]).
  StepStats step(std::span<float> params, std::span<const float> grads, int64_t step);
  // The same for the range: params and grads hold its elements only, and grad_norm is the
  // global norm the ranks agreed on.
  StepStats step(std::span<float> params, std::span<const float> grads, int64_t step,
                 double grad_norm);
  // Restores the moments of a checkpoint (the bias correction follows the step number): the
  // range's elements of full-size moments.
  void load_moments(std::span<const float> m, std::span<const float> v);

  size_t lo() const { return lo_; }
  size_t hi() const { return hi_; }

  std::span<float> m() { return m_; }
  std::span<float> v() { return v_; }
  const OptimizerConfig& config() const { return cfg_; }

 private:
  OptimizerConfig cfg_;
  const ParamLayout& layout_;
  size_t lo_ = 0, hi_ = 0;
  std::vector<float> m_;
  std::vector<float> v_;
};

}  // namespace dpt::trainer
