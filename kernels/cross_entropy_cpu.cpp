// Fused softmax + cross-entropy on the CPU, the language-model loss, forward and backward.
#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "common/errors.h"

namespace dpt::kernels {
namespace {

// All targets are checked before any indexes a row: a bad id must not read or write outside it.
void check_targets(const int32_t* targets, int N, int V) {
  for (int n = 0; n < N; ++n) {
    const int32_t id = targets[n];
    DPT_CHECK(id >= 0 && id < V, "target id " + std::to_string(id) + " at position " +
                                     std::to_string(n) + " is outside the vocabulary [0, " +
                                     std::to_string(V) + ")");
  }
}

void check_shape(int V, int ld) {
  DPT_CHECK(V > 0 && ld >= V, "cross-entropy: vocabulary " + std::to_string(V) + " with rows " +
                                  std::to_string(ld) +
                                  " apart ([Padded vocabulary] needs ld >= V)");
}

}  // namespace

template <typename T>
void softmax_cross_entropy_forward_cpu(T* losses, T* probs, const T* logits, const int32_t* targets,
                                       int N, int V, int ld) {
  check_shape(V, ld);
  check_targets(targets, N, V);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* z = logits + static_cast<size_t>(n) * ld;
    T* p = probs + static_cast<size_t>(n) * ld;
    double maxv = z[0];
    for (int v = 1; v < V; ++v) {
      maxv = std::max(maxv, static_cast<double>(z[v]));
    }
    double sum = 0.0;
    for (int v = 0; v < V; ++v) {
      const double e = std::exp(z[v] - maxv);
      p[v] = static_cast<T>(e);
      sum += e;
    }
    const double inv = 1.0 / sum;
    for (int v = 0; v < V; ++v) {
      p[v] = static_cast<T>(p[v] * inv);
    }
    // logsumexp - logit, not -log(p[target]): finite even when p[target] underflows to 0.
    losses[n] = static_cast<T>(maxv + std::log(sum) - z[targets[n]]);
  }
}

template <typename T>
void softmax_cross_entropy_backward_cpu(T* dlogits, const T* dlosses, const T* probs,
                                        const int32_t* targets, int N, int V, int ld) {
  check_shape(V, ld);
  check_targets(targets, N, V);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* p = probs + static_cast<size_t>(n) * ld;
    T* dz = dlogits + static_cast<size_t>(n) * ld;
    const T dl = dlosses[n];
    const int32_t target = targets[n];
    for (int v = 0; v < V; ++v) {
      const T indicator = v == target ? T(1) : T(0);
      dz[v] += dl * (p[v] - indicator);
    }
  }
}

template void softmax_cross_entropy_forward_cpu<float>(float*, float*, const float*, const int32_t*,
                                                       int, int, int);
template void softmax_cross_entropy_forward_cpu<double>(double*, double*, const double*,
                                                        const int32_t*, int, int, int);
template void softmax_cross_entropy_backward_cpu<float>(float*, const float*, const float*,
                                                        const int32_t*, int, int, int);
template void softmax_cross_entropy_backward_cpu<double>(double*, const double*, const double*,
                                                         const int32_t*, int, int, int);

}  // namespace dpt::kernels
