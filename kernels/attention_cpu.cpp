// Multi-head self-attention on the CPU: per (batch, head) pair, BLAS products on strided views
// of qkv plus a softmax under the [Attention mask]; no copies of q, k, v.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "common/errors.h"
#include "kernels/attention_heads.h"
#include "kernels/gemm.h"
#include "kernels/vec_exp.h"

namespace dpt::kernels {
namespace {

// Query rows per block of the products ([Attention on the CPU]).
constexpr int kRowBlock = 64;

using namespace attention_detail;

}  // namespace

// [Attention on the CPU]
// Each (b, h) pair is independent and owns its att / scratch slice and its head's channels of
// out / dqkv, so the pairs run in parallel with no shared writes. Inside the parallel region
// OpenBLAS's OpenMP build runs single-threaded, which is what we want: one level of threads.
// The products go by blocks of kRowBlock query rows, each against only the keys some row of the
// block sees ([0, visible_keys of its last row)): under the causal mask that skips most of the
// upper triangle (a quarter of the work at T = 128, nearly half at T = 1024), under padding the
// keys past the length. The mask then zeroes the hidden keys exactly, so that att holds the
// whole T x T square as attention.h describes it and the backward products see zeros there.
template <typename T>
void attention_forward_cpu(T* out, T* att, const T* qkv, int B, int Tn, int C, int NH,
                           const AttentionMask& mask) {
  check_heads(C, NH);
  for (int b = 0; b < B; ++b)
    length_of(mask, b, Tn);  // checked before the parallel region, which must not throw
  const int hs = C / NH;
  const int C3 = 3 * C;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
  const int pairs = B * NH;
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < pairs; ++bh) {
    const HeadOffsets at = head_offsets(bh, NH, Tn, C);
    const T* q = qkv + at.qkv;
    const T* k = q + C;
    const T* v = q + 2 * C;
    T* p = att + at.att;
    T* o = out + at.out;

    const int len = length_of(mask, bh / NH, Tn);
    // scores = scale Q K^T, by row blocks over the keys they see
    for (int r0 = 0; r0 < Tn; r0 += kRowBlock) {
      const int rows = std::min(kRowBlock, Tn - r0);
      const int keys = visible_keys(mask.causal, len, r0 + rows - 1);
      gemm_cpu<T>(false, true, rows, keys, hs, scale, q + static_cast<size_t>(r0) * C3, C3, k, C3,
                  T(0), p + static_cast<size_t>(r0) * Tn, Tn);
    }

    for (int t = 0; t < Tn; ++t) {
      T* row = p + static_cast<size_t>(t) * Tn;
      const int seen = visible_keys(mask.causal, len, t);
      double maxv = row[0];
      for (int s = 1; s < seen; ++s) {
        maxv = std::max(maxv, static_cast<double>(row[s]));
      }
      // The exponentials in T (the [Vector exp] for float: this loop vectorizes), their sum
      // in double.
      const T shift = static_cast<T>(maxv);
#pragma omp simd
      for (int s = 0; s < seen; ++s)
        row[s] = exp_of<T>(row[s] - shift);
      double sum = 0.0;
      for (int s = 0; s < seen; ++s)
        sum += row[s];
      const double inv = 1.0 / sum;
      for (int s = 0; s < seen; ++s) {
        row[s] = static_cast<T>(row[s] * inv);
      }
      for (int s = seen; s < Tn; ++s) {
        row[s] = T(0);
      }
    }

    // out = P V, by row blocks over the keys they see
    for (int r0 = 0; r0 < Tn; r0 += kRowBlock) {
      const int rows = std::min(kRowBlock, Tn - r0);
      const int keys = visible_keys(mask.causal, len, r0 + rows - 1);
      gemm_cpu<T>(false, false, rows, hs, keys, T(1), p + static_cast<size_t>(r0) * Tn, Tn, v, C3,
                  T(0), o + static_cast<size_t>(r0) * C, C);
    }
  }
}

template <typename T>
void attention_backward_cpu(T* dqkv, T* scratch, const T* dout, const T* qkv, const T* att, int B,
                            int Tn, int C, int NH, const AttentionMask& mask) {
  check_heads(C, NH);
  for (int b = 0; b < B; ++b)
    length_of(mask, b, Tn);
  const int hs = C / NH;
  const int C3 = 3 * C;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
  const int pairs = B * NH;
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < pairs; ++bh) {
    const HeadOffsets at = head_offsets(bh, NH, Tn, C);
    const T* q = qkv + at.qkv;
    const T* k = q + C;
    const T* v = q + 2 * C;
    T* dq = dqkv + at.qkv;
    T* dk = dq + C;
    T* dv = dq + 2 * C;
    const T* p = att + at.att;
    T* ds = scratch + at.att;  // scratch has att's layout
    const T* dout_bh = dout + at.out;

    const int len = length_of(mask, bh / NH, Tn);
    // dP = dO V^T;  dV += P^T dO (row blocks over the keys they see, as in the forward pass)
    for (int r0 = 0; r0 < Tn; r0 += kRowBlock) {
      const int rows = std::min(kRowBlock, Tn - r0);
      const int keys = visible_keys(mask.causal, len, r0 + rows - 1);
      const size_t at_row = static_cast<size_t>(r0) * Tn;
      gemm_cpu<T>(false, true, rows, keys, hs, T(1), dout_bh + static_cast<size_t>(r0) * C, C, v,
                  C3, T(0), ds + at_row, Tn);
      gemm_cpu<T>(true, false, keys, hs, rows, T(1), p + at_row, Tn,
                  dout_bh + static_cast<size_t>(r0) * C, C, T(1), dv, C3);
    }

    // Softmax backward in place: dS[t,s] = P[t,s] (dP[t,s] - sum_s' dP[t,s'] P[t,s']) on the
    // keys t sees, exactly 0 elsewhere.
    for (int t = 0; t < Tn; ++t) {
      const T* prow = p + static_cast<size_t>(t) * Tn;
      T* row = ds + static_cast<size_t>(t) * Tn;
      const int seen = visible_keys(mask.causal, len, t);
      double dot = 0.0;
      for (int s = 0; s < seen; ++s) {
        dot += static_cast<double>(row[s]) * prow[s];
      }
      for (int s = 0; s < seen; ++s) {
        row[s] = static_cast<T>(prow[s] * (row[s] - dot));
      }
      for (int s = seen; s < Tn; ++s) {
        row[s] = T(0);
      }
    }

    // scores = scale Q K^T:  dQ += scale dS K;  dK += scale dS^T Q
    for (int r0 = 0; r0 < Tn; r0 += kRowBlock) {
      const int rows = std::min(kRowBlock, Tn - r0);
      const int keys = visible_keys(mask.causal, len, r0 + rows - 1);
      const size_t at_row = static_cast<size_t>(r0) * Tn;
      gemm_cpu<T>(false, false, rows, hs, keys, scale, ds + at_row, Tn, k, C3, T(1),
                  dq + static_cast<size_t>(r0) * C3, C3);
      gemm_cpu<T>(true, false, keys, hs, rows, scale, ds + at_row, Tn,
                  q + static_cast<size_t>(r0) * C3, C3, T(1), dk, C3);
    }
  }
}

template void attention_forward_cpu<float>(float*, float*, const float*, int, int, int, int,
                                           const AttentionMask&);
template void attention_forward_cpu<double>(double*, double*, const double*, int, int, int, int,
                                            const AttentionMask&);
template void attention_backward_cpu<float>(float*, float*, const float*, const float*,
                                            const float*, int, int, int, int, const AttentionMask&);
template void attention_backward_cpu<double>(double*, double*, const double*, const double*,
                                             const double*, int, int, int, int,
                                             const AttentionMask&);

template <typename T>
void attention_decode_cpu(T* out, T* probs, const T* q, const T* k_cache, const T* v_cache,
                          int n_keys, int C, int NH) {
  check_heads(C, NH);
  DPT_CHECK(n_keys >= 1, "attention_decode_cpu: no keys");
  const int hs = C / NH;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
  for (int h = 0; h < NH; ++h) {
    T* p = probs + static_cast<size_t>(h) * n_keys;
    const T* qh = q + h * hs;
    T max = -std::numeric_limits<T>::infinity();
    for (int s = 0; s < n_keys; ++s) {
      const T* k = k_cache + static_cast<size_t>(s) * C + h * hs;
      T dot = 0;
      for (int i = 0; i < hs; ++i)
        dot += qh[i] * k[i];
      p[s] = dot * scale;
      max = std::max(max, p[s]);
    }
    T sum = 0;
    for (int s = 0; s < n_keys; ++s) {
      p[s] = std::exp(p[s] - max);
      sum += p[s];
    }
    const T inv = T(1) / sum;
    T* o = out + h * hs;
    std::fill(o, o + hs, T(0));
    for (int s = 0; s < n_keys; ++s) {
      p[s] *= inv;
      const T* v = v_cache + static_cast<size_t>(s) * C + h * hs;
      for (int i = 0; i < hs; ++i)
        o[i] += p[s] * v[i];
    }
  }
}

template void attention_decode_cpu<float>(float*, float*, const float*, const float*, const float*,
                                          int, int, int);
template void attention_decode_cpu<double>(double*, double*, const double*, const double*,
                                           const double*, int, int, int);

}  // namespace dpt::kernels
