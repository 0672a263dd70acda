// [Tiled attention] on the CPU: the FlashAttention-2 algorithm of flash_attention.h, one
// (sequence, head) pair per thread, tile products through gemm_cpu on strided views of qkv.
#include "kernels/flash_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/errors.h"
#include "kernels/attention_heads.h"
#include "kernels/gemm.h"

namespace dpt::kernels {
namespace {

using namespace attention_detail;

void check_args(int B, int Tn, int C, int NH, const AttentionMask& mask, int tile_q, int tile_k) {
  DPT_CHECK(B >= 0 && Tn >= 0, "tiled attention: negative batch or sequence length");
  check_heads(C, NH);
  DPT_CHECK(tile_q > 0 && tile_k > 0, "tiled attention: tiles must hold at least one row");
  for (int b = 0; b < B; ++b)
    length_of(mask, b, Tn);  // checked before the parallel region, which must not throw
}

// The keys any row of query tile [i0, i1) sees: [0, that). visible_keys grows with t.
int keys_of_tile(const AttentionMask& mask, int len, int i1) {
  return visible_keys(mask.causal, len, i1 - 1);
}

}  // namespace

template <typename T>
void flash_attention_forward_cpu(T* out, T* lse, const T* qkv, int B, int Tn, int C, int NH,
                                 const AttentionMask& mask, int tile_q, int tile_k) {
  check_args(B, Tn, C, NH, mask, tile_q, tile_k);
  const int hs = C / NH, C3 = 3 * C, pairs = B * NH;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
#pragma omp parallel
  {
    std::vector<T> S(static_cast<size_t>(tile_q) * tile_k), acc(static_cast<size_t>(tile_q) * hs);
    std::vector<T> m(tile_q), l(tile_q);
#pragma omp for schedule(static)
    for (int bh = 0; bh < pairs; ++bh) {
      const HeadOffsets at = head_offsets(bh, NH, Tn, C);
      const T* q = qkv + at.qkv;
      const T* k = q + C;
      const T* v = q + 2 * C;
      const int len = mask.lengths ? mask.lengths[bh / NH] : Tn;
      for (int i0 = 0; i0 < Tn; i0 += tile_q) {
        const int nq = std::min(tile_q, Tn - i0);
        std::fill(m.begin(), m.end(), kNegInf);
        std::fill(l.begin(), l.end(), T(0));
        std::fill(acc.begin(), acc.end(), T(0));
        const int keys = keys_of_tile(mask, len, i0 + nq);
        for (int j0 = 0; j0 < keys; j0 += tile_k) {
          const int nk = std::min(tile_k, keys - j0);
          gemm_cpu<T>(false, true, nq, nk, hs, scale, q + static_cast<size_t>(i0) * C3, C3,
                      k + static_cast<size_t>(j0) * C3, C3, T(0), S.data(), nk);
          for (int r = 0; r < nq; ++r) {
            T* s = S.data() + static_cast<size_t>(r) * nk;
            T* a = acc.data() + static_cast<size_t>(r) * hs;
            const int seen = std::min(nk, visible_keys(mask.causal, len, i0 + r) - j0);
            if (seen <= 0) {  // this row sees no key of the tile (above the diagonal)
              std::fill(s, s + nk, T(0));
              continue;
            }
            T mx = m[r];
            for (int c = 0; c < seen; ++c)
              mx = std::max(mx, s[c]);
            const T corr = m[r] == kNegInf ? T(0) : std::exp(m[r] - mx);
            T sum = 0;
            for (int c = 0; c < seen; ++c) {
              s[c] = std::exp(s[c] - mx);
              sum += s[c];
            }
            std::fill(s + seen, s + nk, T(0));
            l[r] = corr * l[r] + sum;
            m[r] = mx;
            for (int d = 0; d < hs; ++d)
              a[d] *= corr;
          }
          // acc += P V over the tile's keys.
          gemm_cpu<T>(false, false, nq, hs, nk, T(1), S.data(), nk,
                      v + static_cast<size_t>(j0) * C3, C3, T(1), acc.data(), hs);
        }
        for (int r = 0; r < nq; ++r) {
          const int t = i0 + r;
          T* o = out + at.out + static_cast<size_t>(t) * C;
          const T inv = T(1) / l[r];
          for (int d = 0; d < hs; ++d)
            o[d] = acc[static_cast<size_t>(r) * hs + d] * inv;
          lse[static_cast<size_t>(bh) * Tn + t] = m[r] + std::log(l[r]);
        }
      }
    }
  }
}

template <typename T>
void flash_attention_backward_cpu(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                                  int B, int Tn, int C, int NH, const AttentionMask& mask,
                                  int tile_q, int tile_k) {
  check_args(B, Tn, C, NH, mask, tile_q, tile_k);
  const int hs = C / NH, C3 = 3 * C, pairs = B * NH;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
#pragma omp parallel
  {
    const size_t tile = static_cast<size_t>(tile_q) * tile_k;
    std::vector<T> P(tile), dS(tile), D(Tn);
    std::vector<T> dk(static_cast<size_t>(tile_k) * hs), dv(static_cast<size_t>(tile_k) * hs);
#pragma omp for schedule(static)
    for (int bh = 0; bh < pairs; ++bh) {
      const HeadOffsets at = head_offsets(bh, NH, Tn, C);
      const T* q = qkv + at.qkv;
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* dq = dqkv + at.qkv;
      const T* dO = dout + at.out;
      const T* O = out + at.out;
      const T* L = lse + static_cast<size_t>(bh) * Tn;
      const int len = mask.lengths ? mask.lengths[bh / NH] : Tn;
      for (int t = 0; t < Tn; ++t) {
        T d = 0;
        for (int c = 0; c < hs; ++c)
          d += dO[static_cast<size_t>(t) * C + c] * O[static_cast<size_t>(t) * C + c];
        D[t] = d;
      }
      // Keys at or past the length are padding that no query sees.
      for (int j0 = 0; j0 < len; j0 += tile_k) {
        const int nk = std::min(tile_k, len - j0);
        std::fill(dk.begin(), dk.end(), T(0));
        std::fill(dv.begin(), dv.end(), T(0));
        // Causal: rows before j0 see none of these keys.
        for (int i0 = mask.causal ? j0 / tile_q * tile_q : 0; i0 < Tn; i0 += tile_q) {
          const int nq = std::min(tile_q, Tn - i0);
          const size_t qi = static_cast<size_t>(i0);
          gemm_cpu<T>(false, true, nq, nk, hs, scale, q + qi * C3, C3,
                      k + static_cast<size_t>(j0) * C3, C3, T(0), P.data(), nk);
          for (int r = 0; r < nq; ++r) {
            T* p = P.data() + static_cast<size_t>(r) * nk;
            const int seen = std::clamp(visible_keys(mask.causal, len, i0 + r) - j0, 0, nk);
            for (int c = 0; c < seen; ++c)
              p[c] = std::exp(p[c] - L[i0 + r]);
            std::fill(p + seen, p + nk, T(0));
          }
          // dV += P^T dO
          gemm_cpu<T>(true, false, nk, hs, nq, T(1), P.data(), nk, dO + qi * C, C, T(1), dv.data(),
                      hs);
          // dS = P (dO V^T - D)
          gemm_cpu<T>(false, true, nq, nk, hs, T(1), dO + qi * C, C,
                      v + static_cast<size_t>(j0) * C3, C3, T(0), dS.data(), nk);
          for (int r = 0; r < nq; ++r) {
            T* ds = dS.data() + static_cast<size_t>(r) * nk;
            const T* p = P.data() + static_cast<size_t>(r) * nk;
            for (int c = 0; c < nk; ++c)
              ds[c] = p[c] * (ds[c] - D[i0 + r]);
          }
          // dQ += scale dS K (straight into dqkv: this pair owns its head's channels)
          gemm_cpu<T>(false, false, nq, hs, nk, scale, dS.data(), nk,
                      k + static_cast<size_t>(j0) * C3, C3, T(1), dq + qi * C3, C3);
          // dK += scale dS^T Q
          gemm_cpu<T>(true, false, nk, hs, nq, scale, dS.data(), nk, q + qi * C3, C3, T(1),
                      dk.data(), hs);
        }
        for (int r = 0; r < nk; ++r) {
          T* dkr = dq + C + static_cast<size_t>(j0 + r) * C3;
          T* dvr = dq + 2 * C + static_cast<size_t>(j0 + r) * C3;
          for (int d = 0; d < hs; ++d) {
            dkr[d] += dk[static_cast<size_t>(r) * hs + d];
            dvr[d] += dv[static_cast<size_t>(r) * hs + d];
          }
        }
      }
    }
  }
}

template void flash_attention_forward_cpu<float>(float*, float*, const float*, int, int, int, int,
                                                 const AttentionMask&, int, int);
template void flash_attention_forward_cpu<double>(double*, double*, const double*, int, int, int,
                                                  int, const AttentionMask&, int, int);
template void flash_attention_backward_cpu<float>(float*, const float*, const float*, const float*,
                                                  const float*, int, int, int, int,
                                                  const AttentionMask&, int, int);
template void flash_attention_backward_cpu<double>(double*, const double*, const double*,
                                                   const double*, const double*, int, int, int, int,
                                                   const AttentionMask&, int, int);

}  // namespace dpt::kernels
