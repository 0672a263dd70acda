// Layer normalization on the CPU: per-row statistics forward (alone or after the residual add);
// backward the input gradient per row and the weight / bias gradients as deterministic column
// sums.
#include "kernels/layernorm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/residual.h"

namespace dpt::kernels {
namespace {

// Channels per block of the parameter-gradient reduction; the stack accumulators are this long.
constexpr int kChannelBlock = 32;

}  // namespace

LayerNormSlices layernorm_backward_slices(int N) {
  if (N <= 0) return {};
  const int by_count = (N + kLayerNormMaxSlices - 1) / kLayerNormMaxSlices;
  LayerNormSlices p;
  p.rows = std::max(by_count, kLayerNormMinSliceRows);
  p.count = (N + p.rows - 1) / p.rows;
  return p;
}

size_t layernorm_backward_scratch_floats(int N, int C) {
  if (N <= 0 || C <= 0) return 0;
  // For N' <= N: count(N') <= ceil(N' / kLayerNormMinSliceRows) <= ceil(N / that), and
  // count(N') <= kLayerNormMaxSlices since a slice holds at least ceil(N' / max) rows.
  const int bound =
      std::min(kLayerNormMaxSlices, (N + kLayerNormMinSliceRows - 1) / kLayerNormMinSliceRows);
  return static_cast<size_t>(bound) * 2 * static_cast<size_t>(C);
}

template <typename T>
void layernorm_forward_cpu(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                           int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* x = inp + static_cast<size_t>(n) * C;
    T* o = out + static_cast<size_t>(n) * C;
    // Statistics in double and in two passes: one-pass E[x^2] - E[x]^2 cancels badly in float.
    double sum = 0.0;
    for (int c = 0; c < C; ++c) {
      sum += x[c];
    }
    const double m = sum / C;
    double sq = 0.0;
    for (int c = 0; c < C; ++c) {
      const double d = x[c] - m;
      sq += d * d;
    }
    const double s = 1.0 / std::sqrt(sq / C + kLayerNormEps);
    for (int c = 0; c < C; ++c) {
      o[c] = static_cast<T>((x[c] - m) * s * weight[c] + bias[c]);
    }
    mean[n] = static_cast<T>(m);
    rstd[n] = static_cast<T>(s);
  }
}

template <typename T>
void residual_layernorm_forward_cpu(T* res_out, T* ln_out, T* mean, T* rstd, const T* a, const T* b,
                                    const T* weight, const T* bias, int N, int C) {
  if (N <= 0 || C <= 0) return;  // nothing to do, and N * C must not wrap into a size_t
  residual_forward_cpu<T>(res_out, a, b, static_cast<size_t>(N) * static_cast<size_t>(C));
  layernorm_forward_cpu<T>(ln_out, mean, rstd, res_out, weight, bias, N, C);
}

template <typename T>
void layernorm_backward_cpu(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                            const T* weight, const T* mean, const T* rstd, int N, int C) {
  // dinp: with xhat = (x - mean) rstd and g = dout * weight,
  // dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)). Rows are independent.
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* x = inp + static_cast<size_t>(n) * C;
    const T* dy = dout + static_cast<size_t>(n) * C;
    T* dx = dinp + static_cast<size_t>(n) * C;
    const double m = mean[n];
    const double s = rstd[n];
    double sum_g = 0.0;
    double sum_g_xhat = 0.0;
    for (int c = 0; c < C; ++c) {
      const double g = static_cast<double>(dy[c]) * weight[c];
      sum_g += g;
      sum_g_xhat += g * (x[c] - m) * s;
    }
    const double mean_g = sum_g / C;
    const double mean_g_xhat = sum_g_xhat / C;
    for (int c = 0; c < C; ++c) {
      const double g = static_cast<double>(dy[c]) * weight[c];
      const double xhat = (x[c] - m) * s;
      dx[c] += static_cast<T>(s * (g - mean_g - xhat * mean_g_xhat));
    }
  }

  // dweight, dbias: sums over rows. Each block of channels belongs to one loop iteration, which
  // walks all rows in order and accumulates in double, so the bits do not depend on the
  // schedule or the thread count.
  const int blocks = (C + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = blk * kChannelBlock;
    const int width = std::min(kChannelBlock, C - c0);
    double acc_w[kChannelBlock] = {};
    double acc_b[kChannelBlock] = {};
    for (int n = 0; n < N; ++n) {
      const T* x = inp + static_cast<size_t>(n) * C + c0;
      const T* dy = dout + static_cast<size_t>(n) * C + c0;
      const double m = mean[n];
      const double s = rstd[n];
      for (int j = 0; j < width; ++j) {
        acc_w[j] += static_cast<double>(dy[j]) * ((x[j] - m) * s);
        acc_b[j] += dy[j];
      }
    }
    for (int j = 0; j < width; ++j) {
      dweight[c0 + j] += static_cast<T>(acc_w[j]);
      dbias[c0 + j] += static_cast<T>(acc_b[j]);
    }
  }
}

template void layernorm_forward_cpu<float>(float*, float*, float*, const float*, const float*,
                                           const float*, int, int);
template void layernorm_forward_cpu<double>(double*, double*, double*, const double*, const double*,
                                            const double*, int, int);
template void residual_layernorm_forward_cpu<float>(float*, float*, float*, float*, const float*,
                                                    const float*, const float*, const float*, int,
                                                    int);
template void residual_layernorm_forward_cpu<double>(double*, double*, double*, double*,
                                                     const double*, const double*, const double*,
                                                     const double*, int, int);
template void layernorm_backward_cpu<float>(float*, float*, float*, const float*, const float*,
                                            const float*, const float*, const float*, int, int);
template void layernorm_backward_cpu<double>(double*, double*, double*, const double*,
                                             const double*, const double*, const double*,
                                             const double*, int, int);

}  // namespace dpt::kernels
