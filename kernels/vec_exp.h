// An exp for the CPU kernels' float loops that the compiler turns into SIMD code.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace dpt::kernels {

// [Vector exp] libm's expf is a call the compiler cannot vectorize, and in the float loops of
// GELU and the attention softmax it was a fifth of a CPU training step. This one is
// straight-line code (no branches, no table), so a loop that calls it vectorizes:
//   n = round(x log2 e), r = x - n ln 2 (ln 2 split in two so that r is exact),
//   e^r = 1 + r + r^2 P(r) on [-ln2/2, ln2/2] with Cephes' expf polynomial (degree 5),
//   e^x = 2^n e^r, 2^n built in the exponent bits.
// Accurate to about 2 ulp (the test holds 3e-7 relative against double exp). It saturates:
// inputs above 88.37 give e^88.37 (2.4e38) and inputs below -87.33 give e^-87.33 (1.2e-38),
// +-inf included; NaN stays NaN. The callers compute ratios like 1 / (1 + e) and softmax
// terms e^(s - max) <= 1, where these stand for inf and 0 (the clamp is a min and a max; a
// select on a float comparison would keep GCC from vectorizing the loop under its default
// -ftrapping-math).
inline float exp_vec(float x) {
  constexpr float kHi = 88.37f, kLo = -87.33f;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;  // ln 2 = hi + lo
  // std::min / std::max and the 1.5 * 2^23 rounding trick rather than fmin, fmax and
  // nearbyint, which are library calls on the baseline x86-64 target (SSE2). NaN passes both
  // (the comparisons are false) and makes r, and so the result, NaN; the exponent n comes from
  // 0 instead, since converting NaN to an integer is undefined (UBSan in CI found it).
  const float xc = std::min(std::max(x, kLo), kHi);
  const float xn = xc == xc ? xc : 0.0f;
  constexpr float kRound = 12582912.0f;  // adding and subtracting it rounds to an integer
  const float n = (xn * kLog2e + kRound) - kRound;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = 1.0f + r + r * r * p;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return er * scale;
}

// exp in the kernels' type: the vector exp for float, libm's for double (the reference path).
template <typename T>
inline T exp_of(T x) {
  if constexpr (std::is_same_v<T, float>)
    return exp_vec(x);
  else
    return std::exp(x);
}

}  // namespace dpt::kernels
