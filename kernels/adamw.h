// AdamW update (Loshchilov & Hutter, decoupled weight decay) and the squared L2 norm used for
// global gradient-norm clipping.
#pragma once

#include <cstddef>

namespace dpt::kernels {

// Sum of squares of x[0..n), accumulated in double in a fixed order (deterministic for a fixed
// thread count).
template <typename T>
double sum_squares_cpu(const T* x, size_t n);

struct AdamWParams {
  double lr;            // learning rate of this step
  double beta1;         // first-moment decay, e.g. 0.9
  double beta2;         // second-moment decay, e.g. 0.95
  double eps;           // e.g. 1e-8
  double weight_decay;  // decoupled decay of this tensor (0 for tensors exempt from decay)
  double grad_scale;    // multiplies every gradient first (clipping factor)
  long step;            // 1-based optimizer step, for bias correction
};

// For each i, with g = grad[i] * grad_scale:
//   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
//   mhat = m / (1 - beta1^step);   vhat = v / (1 - beta2^step)
//   param -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * param)
// param, m, v are updated in place.
template <typename T>
void adamw_update_cpu(T* param, T* m, T* v, const T* grad, size_t n, const AdamWParams& p);

}  // namespace dpt::kernels
