// Layer normalization over the last dimension (eps = 1e-5, biased variance, as torch).
#pragma once

namespace dpt::kernels {

inline constexpr double kLayerNormEps = 1e-5;

// out[n,:] = (inp[n,:] - mean[n]) * rstd[n] * weight + bias
// inp, out [N,C]; weight, bias [C]; mean, rstd [N] are saved for the backward pass.
template <typename T>
void layernorm_forward_cpu(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                           int N, int C);

// Adds into dinp [N,C], dweight [C], dbias [C].
template <typename T>
void layernorm_backward_cpu(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                            const T* weight, const T* mean, const T* rstd, int N, int C);

}  // namespace dpt::kernels
