// Schedule, clipping and the per-tensor AdamW update over the CPU reference kernel.
#include "trainer/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/errors.h"
#include "kernels/adamw.h"

namespace dpt::trainer {

double learning_rate(const OptimizerConfig& cfg, int64_t step) {
  if (cfg.warmup_steps > 0 && step <= cfg.warmup_steps) {
    return cfg.lr * static_cast<double>(step) / static_cast<double>(cfg.warmup_steps);
  }
  const int64_t decay_steps = cfg.total_steps - cfg.warmup_steps;
  if (decay_steps <= 0) return cfg.lr;
  const double progress =
      std::clamp(static_cast<double>(step - cfg.warmup_steps) / decay_steps, 0.0, 1.0);
  const double min_lr = cfg.lr * cfg.min_lr_ratio;
  return min_lr + 0.5 * (cfg.lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

double clip_factor(double grad_norm, double grad_clip) {
  if (grad_clip <= 0.0 || !(grad_norm > grad_clip)) return 1.0;
  return grad_clip / (grad_norm + 1e-6);
}

AdamW::AdamW(const OptimizerConfig& cfg, const ParamLayout& layout)
    : cfg_(cfg), layout_(layout), m_(layout.total(), 0.0f), v_(layout.total(), 0.0f) {}

StepStats AdamW::step(std::span<float> params, std::span<const float> grads, int64_t step) {
  DPT_CHECK(params.size() == layout_.total() && grads.size() == layout_.total(),
            "parameter/gradient buffers do not match the layout");
  StepStats s;
  s.lr = learning_rate(cfg_, step);
  s.grad_norm = std::sqrt(kernels::sum_squares_cpu(grads.data(), grads.size()));
  s.clip = clip_factor(s.grad_norm, cfg_.grad_clip);
  // [Non-finite guard] A NaN or Inf anywhere in the gradient makes its norm non-finite; the
  // update would spread it to every parameter through the moments, so it is not applied.
  if (!std::isfinite(s.grad_norm)) {
    s.skipped = true;
    return s;
  }
  for (const TensorView& t : layout_.tensors()) {
    kernels::AdamWParams p{s.lr,
                           cfg_.beta1,
                           cfg_.beta2,
                           cfg_.eps,
                           decays(t) ? cfg_.weight_decay : 0.0,
                           s.clip,
                           static_cast<long>(step)};
    kernels::adamw_update_cpu(params.data() + t.offset, m_.data() + t.offset, v_.data() + t.offset,
                              grads.data() + t.offset, t.numel(), p);
  }
  return s;
}

void AdamW::load_moments(std::span<const float> m, std::span<const float> v) {
  DPT_CHECK(m.size() == m_.size() && v.size() == v_.size(), "moment buffers of the wrong size");
  std::memcpy(m_.data(), m.data(), m.size_bytes());
  std::memcpy(v_.data(), v.data(), v.size_bytes());
}

}  // namespace dpt::trainer
