// Linear layer: matrix product plus bias, with torch.nn.Linear's weight layout.
#pragma once

#include <cstddef>
#include "kernels/cuda_stream.h"
#include "kernels/gemm.h"
#include "kernels/grad_input.h"

namespace dpt::kernels {

// out[N,OC] = inp[N,C] * weight[OC,C]^T + bias[OC]   (bias may be null)
// ld_out: elements between rows of out (and of dout below), OC when 0. The language-model head
// pads its rows ([Padded vocabulary], kernels/cross_entropy.h); columns [OC, ld_out) are neither
// read nor written.
template <typename T>
void linear_forward_cpu(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC,
                        int ld_out = 0);

// Adds into dinp [N,C] += dout * weight, dweight [OC,C] += dout^T * inp, dbias [OC] += sum_n dout.
// dbias may be null (no bias); dinp may be null (input needs no gradient). With
// GradInput::write dinp = dout * weight instead ([Gradient write]).
template <typename T>
void linear_backward_cpu(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                         const T* weight, int N, int C, int OC,
                         GradInput dinp_mode = GradInput::add, int ld_out = 0);

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
// T is float or __nv_bfloat16 for activations and weights; weight and bias gradients are fp32.
template <typename T>
void linear_forward_cuda(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC,
                         GemmCuda& gemm, CudaStream stream, int ld_out = 0);

// Floats of scratch linear_backward_cuda needs (partial column sums for dbias).
size_t linear_backward_scratch_floats(int N, int OC);

// Adds into dinp [N,C] (T; nullable), dweight [OC,C] (fp32) and dbias [OC] (fp32; nullable).
// The bias gradient sums fixed row slices and reduces them in order (deterministic). With
// GradInput::write the product writes dinp (beta 0) instead of adding ([Gradient write]).
template <typename T>
void linear_backward_cuda(T* dinp, float* dweight, float* dbias, const T* dout, const T* inp,
                          const T* weight, float* scratch, int N, int C, int OC, GemmCuda& gemm,
                          CudaStream stream, GradInput dinp_mode = GradInput::add, int ld_out = 0);

// [GELU epilogues] The MLP's GELU fused into its two matrix products through cuBLASLt epilogues
// ([GEMM epilogues], gemm.h), for x -> fc -> GELU -> proj:
//   forward:  linear_gelu_forward_cuda on fc writes the pre-activation and its GELU in one
//             product, instead of linear_forward_cuda + gelu_forward_cuda;
//   backward: linear_dgelu_backward_cuda on proj (the product that READS the GELU output) writes
//             the gradient of the pre-activation in one product, instead of
//             linear_backward_cuda(..., GradInput::write) + gelu_backward_cuda(...,
//             GradInput::write); fc's own backward (linear_backward_cuda) then takes it as dout.
// GELU is the tanh approximation of gelu.h. Fused results match the separate kernels within
// rounding, not bit for bit: the fused product applies GELU (or its derivative) to the fp32 sum
// before rounding to T, where the separate kernels round first. Where cuBLASLt has no fused
// algorithm (gemm.h), and always where the GELU width (OC of the forward, C of the backward) is
// not a multiple of 8, the same calls run unfused and give the separate kernels' values.

// out_pre[N,OC] = inp[N,C] * weight[OC,C]^T + bias[OC] (bias nullable) and out_gelu[N,OC] =
// gelu(out_pre), both written; they must not overlap.
template <typename T>
void linear_gelu_forward_cuda(T* out_gelu, T* out_pre, const T* inp, const T* weight, const T* bias,
                              int N, int C, int OC, GemmCuda& gemm, CudaStream stream);

// Backward of the linear layer whose input is inp = gelu(pre), with pre its pre-activation
// (both [N,C], as linear_gelu_forward_cuda wrote them):
//   dpre [N,C] = (dout[N,OC] * weight[OC,C]) * gelu'(pre), WRITTEN (beta 0, [Gradient write]),
//   dweight [OC,C] += dout^T * inp (fp32), dbias [OC] += sum_n dout (fp32, nullable; the
//   deterministic column sum of linear_backward_cuda, with its scratch).
// dpre must not overlap pre. Not cuBLASLt's DGELU_BGRAD: the bias gradient it could give is the
// one of pre (fc's, which fc's backward computes), stored rather than added, in T.
template <typename T>
void linear_dgelu_backward_cuda(T* dpre, float* dweight, float* dbias, const T* dout, const T* inp,
                                const T* pre, const T* weight, float* scratch, int N, int C, int OC,
                                GemmCuda& gemm, CudaStream stream);

}  // namespace dpt::kernels
