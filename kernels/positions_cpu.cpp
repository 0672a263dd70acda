// [Positions] on the CPU: rows copied with their position added; the backward sums the batch
// in b order for each position (deterministic whatever the thread count).
#include "common/errors.h"
#include "kernels/positions.h"

namespace dpt::kernels {

template <typename T>
void positions_forward_cpu(T* x, const T* emb, const T* cls, const T* wpe, int B, int Tin, int C) {
  DPT_CHECK(B >= 0 && Tin > 0 && C > 0, "positions_forward_cpu: bad shape");
  const int off = cls ? 1 : 0, Tx = Tin + off;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < Tx; ++t) {
      T* o = x + (static_cast<size_t>(b) * Tx + t) * C;
      const T* pe = wpe + static_cast<size_t>(t) * C;
      const T* in = t < off ? cls : emb + (static_cast<size_t>(b) * Tin + (t - off)) * C;
      for (int c = 0; c < C; ++c)
        o[c] = in[c] + pe[c];
    }
  }
}

template <typename T>
void positions_backward_cpu(T* demb, T* dcls, T* dwpe, const T* dx, int B, int Tin, int C) {
  DPT_CHECK(B >= 0 && Tin > 0 && C > 0, "positions_backward_cpu: bad shape");
  const int off = dcls ? 1 : 0, Tx = Tin + off;
#pragma omp parallel for schedule(static)
  for (int t = 0; t < Tx; ++t) {
    T* dp = dwpe + static_cast<size_t>(t) * C;
    for (int b = 0; b < B; ++b) {
      const T* g = dx + (static_cast<size_t>(b) * Tx + t) * C;
      T* din = t < off ? nullptr
                       : (demb ? demb + (static_cast<size_t>(b) * Tin + t - off) * C : nullptr);
      for (int c = 0; c < C; ++c) {
        dp[c] += g[c];
        if (din) din[c] += g[c];
      }
    }
  }
  if (dcls) {
    for (int b = 0; b < B; ++b) {
      const T* g = dx + static_cast<size_t>(b) * Tx * C;
      for (int c = 0; c < C; ++c)
        dcls[c] += g[c];
    }
  }
}

template void positions_forward_cpu<float>(float*, const float*, const float*, const float*, int,
                                           int, int);
template void positions_forward_cpu<double>(double*, const double*, const double*, const double*,
                                            int, int, int);
template void positions_backward_cpu<float>(float*, float*, float*, const float*, int, int, int);
template void positions_backward_cpu<double>(double*, double*, double*, const double*, int, int,
                                             int);

}  // namespace dpt::kernels
