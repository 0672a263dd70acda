// Linear layer: matrix product plus bias, with torch.nn.Linear's weight layout.
#pragma once

#include <cstddef>
#include "kernels/cuda_stream.h"
#include "kernels/gemm.h"
#include "kernels/grad_input.h"

namespace dpt::kernels {

// out[N,OC] = inp[N,C] * weight[OC,C]^T + bias[OC]   (bias may be null)
template <typename T>
void linear_forward_cpu(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC);

// Adds into dinp [N,C] += dout * weight, dweight [OC,C] += dout^T * inp, dbias [OC] += sum_n dout.
// dbias may be null (no bias); dinp may be null (input needs no gradient). With
// GradInput::write dinp = dout * weight instead ([Gradient write]).
template <typename T>
void linear_backward_cpu(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                         const T* weight, int N, int C, int OC,
                         GradInput dinp_mode = GradInput::add);

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
// T is float or __nv_bfloat16 for activations and weights; weight and bias gradients are fp32.
template <typename T>
void linear_forward_cuda(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC,
                         GemmCuda& gemm, CudaStream stream);

// Floats of scratch linear_backward_cuda needs (partial column sums for dbias).
size_t linear_backward_scratch_floats(int N, int OC);

// Adds into dinp [N,C] (T; nullable), dweight [OC,C] (fp32) and dbias [OC] (fp32; nullable).
// The bias gradient sums fixed row slices and reduces them in order (deterministic). With
// GradInput::write the product writes dinp (beta 0) instead of adding ([Gradient write]).
template <typename T>
void linear_backward_cuda(T* dinp, float* dweight, float* dbias, const T* dout, const T* inp,
                          const T* weight, float* scratch, int N, int C, int OC, GemmCuda& gemm,
                          CudaStream stream, GradInput dinp_mode = GradInput::add);

}  // namespace dpt::kernels
