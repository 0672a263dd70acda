// GELU (the tanh approximation, kernels/gelu.h) and its derivative for one fp32 value on the
// device: what gelu.cu's kernels and the unfused [GEMM epilogues] of gemm.cu compute, so that
// the two give the same bits. Included by .cu files only.
#pragma once

namespace dpt::kernels::cuda_detail {

constexpr float kGeluSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

// 0.5 x (1 + tanh u) = x sigmoid(2u): expf is accurate (no fast-math) and the form has no
// cancellation in 1 + tanh for large negative x; exp overflowing to inf gives -0, as on the CPU.
__device__ __forceinline__ float gelu(float x) {
  const float u = kGeluSqrt2OverPi * (x + kGeluCubic * x * x * x);
  return x / (1.0f + expf(-2.0f * u));
}

// d gelu / dx, as the CPU reference: s = sigmoid(2u), 1 - s = 1 / (1 + 1/e) exact near s = 1.
__device__ __forceinline__ float gelu_grad(float x) {
  const float u = kGeluSqrt2OverPi * (x + kGeluCubic * x * x * x);
  const float e = expf(-2.0f * u);
  const float s = 1.0f / (1.0f + e);
  const float one_minus_s = 1.0f / (1.0f + 1.0f / e);
  const float du = kGeluSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
  return s + 2.0f * x * s * one_minus_s * du;
}

}  // namespace dpt::kernels::cuda_detail
