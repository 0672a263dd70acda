// Token + position embedding on the CPU: the lookup forward, and backward the scatter of the
// gradient into the embedding tables, kept deterministic without atomics.
#include "kernels/encoder.h"

#include <omp.h>
#include <cstdint>
#include <string>
#include <vector>

#include "common/errors.h"

namespace dpt::kernels {
namespace {

// Every id is checked before any of them indexes wte: a bad id must not read (or, backward,
// write) memory outside the table, and the caller's buffers stay untouched when we throw.
void check_tokens(const int32_t* tokens, int B, int Tn, int V) {
  const int64_t n = static_cast<int64_t>(B) * Tn;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = tokens[i];
    DPT_CHECK(id >= 0 && id < V, "token id " + std::to_string(id) + " at position " +
                                     std::to_string(i) + " (b=" + std::to_string(i / Tn) +
                                     ", t=" + std::to_string(i % Tn) +
                                     ") is outside the vocabulary [0, " + std::to_string(V) + ")");
  }
}

}  // namespace

template <typename T>
void encoder_forward_cpu(T* out, const int32_t* tokens, const T* wte, const T* wpe, int B, int Tn,
                         int C, int V) {
  check_tokens(tokens, B, Tn, V);
  const int64_t rows = static_cast<int64_t>(B) * Tn;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows; ++i) {
    const T* te = wte + static_cast<size_t>(tokens[i]) * C;
    const T* pe = wpe + static_cast<size_t>(i % Tn) * C;
    T* o = out + static_cast<size_t>(i) * C;
    for (int c = 0; c < C; ++c) {
      o[c] = te[c] + pe[c];
    }
  }
}

template <typename T>
void encoder_backward_cpu(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int B, int Tn,
                          int C, int V) {
  check_tokens(tokens, B, Tn, V);
  const int64_t rows = static_cast<int64_t>(B) * Tn;

  // dwpe: each position row is owned by one thread and sums the batch in order.
#pragma omp parallel for schedule(static)
  for (int t = 0; t < Tn; ++t) {
    T* dp = dwpe + static_cast<size_t>(t) * C;
    for (int b = 0; b < B; ++b) {
      const T* g = dout + (static_cast<size_t>(b) * Tn + t) * C;
      for (int c = 0; c < C; ++c) {
        dp[c] += g[c];
      }
    }
  }

  // dwte: several positions may hold the same token. Each thread owns a contiguous range of
  // vocabulary rows and adds the positions that hit them in position order, so every row sees
  // the same sequence of additions whatever the thread count or schedule: no atomics needed.
  // Scanning all ids per thread is cheap next to the row additions.
#pragma omp parallel
  {
    const int64_t nth = omp_get_num_threads();
    const int64_t tid = omp_get_thread_num();
    const int64_t v0 = V * tid / nth;
    const int64_t v1 = V * (tid + 1) / nth;
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t id = tokens[i];
      if (id < v0 || id >= v1) continue;
      T* dw = dwte + static_cast<size_t>(id) * C;
      const T* g = dout + static_cast<size_t>(i) * C;
      for (int c = 0; c < C; ++c) {
        dw[c] += g[c];
      }
    }
  }
}

// [Embedding buckets] A stable counting sort of the positions by token. bucket_start serves as
// the per-token cursor array while sorting and is then compacted to the non-empty buckets, so a
// caller that keeps `out` across micro-batches allocates nothing after the first call.
void encoder_buckets(EmbeddingBuckets* out, const int32_t* tokens, int n, int V) {
  DPT_CHECK(out != nullptr, "encoder_buckets: null output");
  DPT_CHECK(n >= 0 && V > 0, "encoder_buckets: n=" + std::to_string(n) +
                                 ", V=" + std::to_string(V) + " (need n >= 0 and V > 0)");
  for (int i = 0; i < n; ++i) {
    const int32_t id = tokens[i];
    DPT_CHECK(id >= 0 && id < V, "token id " + std::to_string(id) + " at position " +
                                     std::to_string(i) + " is outside the vocabulary [0, " +
                                     std::to_string(V) + ")");
  }
  std::vector<int32_t>& start = out->bucket_start;
  start.assign(static_cast<size_t>(V) + 1, 0);
  for (int i = 0; i < n; ++i) {
    ++start[tokens[i] + 1];
  }
  for (int v = 0; v < V; ++v) {
    start[v + 1] += start[v];  // start[v]: first slot of token v
  }
  out->order.resize(n);
  for (int i = 0; i < n; ++i) {
    out->order[start[tokens[i]]++] = i;  // ascending i keeps each bucket in position order
  }
  // Now start[v] is the end of token v's run (the start of v + 1's). Compact in place: the write
  // index j never passes the read index v, and start[v] is read before start[j] is written.
  out->bucket_token.clear();
  int32_t begin = 0;
  int j = 0;
  for (int v = 0; v < V; ++v) {
    const int32_t end = start[v];
    if (end > begin) {
      out->bucket_token.push_back(v);
      start[j++] = begin;
    }
    begin = end;
  }
  start[j] = n;
  start.resize(static_cast<size_t>(j) + 1);
}

template void encoder_forward_cpu<float>(float*, const int32_t*, const float*, const float*, int,
                                         int, int, int);
template void encoder_forward_cpu<double>(double*, const int32_t*, const double*, const double*,
                                          int, int, int, int);
template void encoder_backward_cpu<float>(float*, float*, const float*, const int32_t*, int, int,
                                          int, int);
template void encoder_backward_cpu<double>(double*, double*, const double*, const int32_t*, int,
                                           int, int, int);

}  // namespace dpt::kernels
