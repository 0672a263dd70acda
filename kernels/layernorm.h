// Layer normalization over the last dimension (eps = 1e-5, biased variance, as torch).
#pragma once

#include <cstddef>
#include "kernels/cuda_stream.h"

namespace dpt::kernels {

inline constexpr double kLayerNormEps = 1e-5;

// out[n,:] = (inp[n,:] - mean[n]) * rstd[n] * weight + bias
// inp, out [N,C]; weight, bias [C]; mean, rstd [N] are saved for the backward pass.
template <typename T>
void layernorm_forward_cpu(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                           int N, int C);

// [Residual LayerNorm] on the CPU: residual_forward_cpu (kernels/residual.h) into res_out, then
// layernorm_forward_cpu of res_out, with the bits of those two calls. Shapes as in the CUDA
// declaration below.
template <typename T>
void residual_layernorm_forward_cpu(T* res_out, T* ln_out, T* mean, T* rstd, const T* a, const T* b,
                                    const T* weight, const T* bias, int N, int C);

// Adds into dinp [N,C], dweight [C], dbias [C].
template <typename T>
void layernorm_backward_cpu(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                            const T* weight, const T* mean, const T* rstd, int N, int C);

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
// T (float or __nv_bfloat16) for activations and LayerNorm parameters; mean and rstd fp32.
template <typename T>
void layernorm_forward_cuda(T* out, float* mean, float* rstd, const T* inp, const T* weight,
                            const T* bias, int N, int C, CudaStream stream);

// [Residual LayerNorm] The residual add and the LayerNorm after it (a block's res2 = x + attproj
// and ln2, or res3 and the next block's ln1) in one pass over memory instead of two:
//   res_out = a + b, rounded to T as residual_forward_cuda rounds it (fp32 sum, then T);
//   ln_out, mean, rstd = layernorm_forward_cuda of the ROUNDED res_out.
// A drop-in for residual_forward_cuda then layernorm_forward_cuda on the same pointers: the same
// bits in all four outputs, for float and bf16. The row is laid out as layernorm_forward_cuda
// lays out res_out (16-byte packs when C is a multiple of the pack and ln_out, res_out, weight,
// bias are 16-byte aligned; single elements otherwise; a and b off the grid are read element by
// element into the pack layout), and both kernels compute statistics and outputs through the
// same code, so the fp32 sums run in the same order.
// a, b, res_out, ln_out [N,C]; weight, bias [C]; mean, rstd [N] fp32, saved for
// layernorm_backward_cuda, whose input is res_out. No output aliases an input or another output.
template <typename T>
void residual_layernorm_forward_cuda(T* res_out, T* ln_out, float* mean, float* rstd, const T* a,
                                     const T* b, const T* weight, const T* bias, int N, int C,
                                     CudaStream stream);

// [LayerNorm slices] The CUDA backward sums dweight and dbias over row slices of at least
// kLayerNormMinSliceRows rows, at most kLayerNormMaxSlices of them. The partition depends on N
// only, so the bits are the same in every run. Host code, compiled with or without CUDA.
inline constexpr int kLayerNormMinSliceRows = 16;
inline constexpr int kLayerNormMaxSlices = 256;
struct LayerNormSlices {
  int rows = 0;   // rows per slice (the last may hold fewer)
  int count = 0;  // slices
};
LayerNormSlices layernorm_backward_slices(int N);

// Floats of scratch layernorm_backward_cuda needs (per-slice partial sums of dweight, dbias)
// for ANY row count up to N. The slice count does not grow monotonically with N (T = 100: 41
// sequences make 242 slices, 39 make 244), so a scratch sized for the largest batch alone could
// be overrun by a smaller one; this is the bound over every N' <= N.
size_t layernorm_backward_scratch_floats(int N, int C);

// Adds into dinp [N,C] (type T) and dweight, dbias [C] (fp32). Deterministic: the partial sums
// over fixed row slices are reduced in slice order.
template <typename T>
void layernorm_backward_cuda(T* dinp, float* dweight, float* dbias, const T* dout, const T* inp,
                             const T* weight, const float* mean, const float* rstd, float* scratch,
                             int N, int C, CudaStream stream);

}  // namespace dpt::kernels
