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
    : AdamW(cfg, layout, 0, layout.total()) {}

AdamW::AdamW(const OptimizerConfig& cfg, const ParamLayout& layout, size_t lo, size_t hi)
    : cfg_(cfg), layout_(layout), lo_(lo), hi_(hi), m_(hi - lo, 0.0f), v_(hi - lo, 0.0f) {
  DPT_CHECK(lo <= hi && hi <= layout.total(), "AdamW range outside the parameter layout");
}

StepStats AdamW::step(std::span<float> params, std::span<const float> grads, int64_t step) {
  DPT_CHECK(lo_ == 0 && hi_ == layout_.total() && grads.size() == layout_.total(),
            "the unsharded update covers the whole layout");
  return this->step(params, grads, step,
                    std::sqrt(kernels::sum_squares_cpu(grads.data(), grads.size())));
}

StepStats AdamW::step(std::span<float> params, std::span<const float> grads, int64_t step,
                      double grad_norm) {
  DPT_CHECK(params.size() == hi_ - lo_ && grads.size() == hi_ - lo_,
            "parameter/gradient buffers do not match the optimizer's range");
  StepStats s;
  s.lr = learning_rate(cfg_, step);
  s.grad_norm = grad_norm;
  s.clip = clip_factor(s.grad_norm, cfg_.grad_clip);
  // [Non-finite guard] A NaN or Inf anywhere in the gradient makes its norm non-finite; the
  // update would spread it to every parameter through the moments, so it is not applied.
  if (!std::isfinite(s.grad_norm)) {
    s.skipped = true;
    return s;
  }
  for (const TensorView& t : layout_.tensors()) {
    const size_t a = std::max(t.offset, lo_), b = std::min(t.offset + t.numel(), hi_);
    if (a >= b) continue;
    kernels::AdamWParams p{s.lr,
                           cfg_.beta1,
                           cfg_.beta2,
                           cfg_.eps,
                           decays(t) ? cfg_.weight_decay : 0.0,
                           s.clip,
                           static_cast<long>(step)};
    const size_t i = a - lo_;
    kernels::adamw_update_cpu(params.data() + i, m_.data() + i, v_.data() + i, grads.data() + i,
                              b - a, p);
  }
  return s;
}

void AdamW::load_moments(std::span<const float> m, std::span<const float> v) {
  DPT_CHECK(m.size() == layout_.total() && v.size() == layout_.total(),
            "moment buffers of the wrong size");
  std::memcpy(m_.data(), m.data() + lo_, m_.size() * sizeof(float));
  std::memcpy(v_.data(), v.data() + lo_, v_.size() * sizeof(float));
}

}  // namespace dpt::trainer
