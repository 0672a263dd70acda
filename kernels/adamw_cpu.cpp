// AdamW update and the squared gradient norm on the CPU, both elementwise over a flat tensor.
#include "kernels/adamw.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "common/errors.h"
#include "kernels/cpu_dispatch.h"

namespace dpt::kernels {
namespace {

// sum_squares splits x into this many fixed chunks whatever the thread count.
constexpr int kSumChunks = 64;

}  // namespace

template <typename T>
double sum_squares_cpu(const T* x, size_t n) {
  // Chunk boundaries depend on n only; each chunk is summed in index order and the partials are
  // combined in chunk order. The result is therefore the same for any thread count, not only
  // for a fixed one. Four interleaved accumulators (always combined the same way) keep the
  // adder pipeline busy without making the order depend on anything but n.
  double partial[kSumChunks];
#pragma omp parallel for schedule(static)
  for (int k = 0; k < kSumChunks; ++k) {
    const size_t lo = n / kSumChunks * k + std::min<size_t>(k, n % kSumChunks);
    const size_t hi = lo + n / kSumChunks + (static_cast<size_t>(k) < n % kSumChunks ? 1 : 0);
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t i = lo;
    for (; i + 4 <= hi; i += 4) {
      const double a = x[i], b = x[i + 1], c = x[i + 2], d = x[i + 3];
      s0 += a * a;
      s1 += b * b;
      s2 += c * c;
      s3 += d * d;
    }
    for (; i < hi; ++i) {
      const double a = x[i];
      s0 += a * a;
    }
    partial[k] = (s0 + s1) + (s2 + s3);
  }
  double total = 0.0;
  for (int k = 0; k < kSumChunks; ++k) {
    total += partial[k];
  }
  return total;
}

namespace {

struct AdamWConstants {
  double beta1, beta2, bias1, bias2, lr, eps, weight_decay, grad_scale;
};

// Elements [lo, hi). The update runs in double for either T; only the stored state is rounded
// to T. Always inlined, so that it takes the SIMD width of its caller ([CPU dispatch]).
template <typename T>
__attribute__((always_inline)) inline void adamw_span(T* param, T* m, T* v, const T* grad,
                                                      const AdamWConstants& c, int64_t lo,
                                                      int64_t hi) {
#pragma omp simd
  for (int64_t i = lo; i < hi; ++i) {
    const double g = static_cast<double>(grad[i]) * c.grad_scale;
    const double mi = c.beta1 * m[i] + (1.0 - c.beta1) * g;
    const double vi = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
    m[i] = static_cast<T>(mi);
    v[i] = static_cast<T>(vi);
    const double mhat = mi / c.bias1;
    const double vhat = vi / c.bias2;
    const double w = param[i];
    param[i] = static_cast<T>(w - c.lr * (mhat / (std::sqrt(vhat) + c.eps) + c.weight_decay * w));
  }
}

DPT_AVX2 void adamw_span_avx2(float* param, float* m, float* v, const float* grad,
                              const AdamWConstants& c, int64_t lo, int64_t hi) {
  adamw_span<float>(param, m, v, grad, c, lo, hi);
}

}  // namespace

template <typename T>
void adamw_update_cpu(T* param, T* m, T* v, const T* grad, size_t n, const AdamWParams& p) {
  DPT_CHECK(p.step >= 1, "AdamW step is 1-based, got " + std::to_string(p.step));
  const AdamWConstants c{p.beta1,
                         p.beta2,
                         1.0 - std::pow(p.beta1, static_cast<double>(p.step)),
                         1.0 - std::pow(p.beta2, static_cast<double>(p.step)),
                         p.lr,
                         p.eps,
                         p.weight_decay,
                         p.grad_scale};
  const int64_t count = static_cast<int64_t>(n);
  const bool wide = std::is_same_v<T, float> && cpu_use_avx2();
#pragma omp parallel
  {
    const auto [lo, hi] = thread_share(count);
    if constexpr (std::is_same_v<T, float>) {
      if (wide)
        adamw_span_avx2(param, m, v, grad, c, lo, hi);
      else
        adamw_span<T>(param, m, v, grad, c, lo, hi);
    } else {
      adamw_span<T>(param, m, v, grad, c, lo, hi);
    }
  }
}

// [Fused AdamW] chunk table: each segment is cut at kAdamWChunk elements, segments and chunks
// in order, so a chunk never straddles two tensors and carries its tensor's weight decay. Empty
// segments yield no chunk.
std::vector<AdamWChunk> adamw_chunks(const std::vector<AdamWSegment>& segments) {
  std::vector<AdamWChunk> chunks;
  for (const AdamWSegment& s : segments) {
    DPT_CHECK(s.offset + s.n >= s.offset,
              "adamw_chunks: segment at offset " + std::to_string(s.offset) + " overflows");
    for (size_t done = 0; done < s.n;) {
      const size_t n = std::min<size_t>(s.n - done, kAdamWChunk);
      chunks.push_back(AdamWChunk{static_cast<uint64_t>(s.offset + done), static_cast<uint32_t>(n),
                                  s.weight_decay});
      done += n;
    }
  }
  return chunks;
}

template double sum_squares_cpu<float>(const float*, size_t);
template double sum_squares_cpu<double>(const double*, size_t);
template void adamw_update_cpu<float>(float*, float*, float*, const float*, size_t,
                                      const AdamWParams&);
template void adamw_update_cpu<double>(double*, double*, double*, const double*, size_t,
                                       const AdamWParams&);

}  // namespace dpt::kernels
