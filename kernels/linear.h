// Linear layer: matrix product plus bias, with torch.nn.Linear's weight layout.
#pragma once

namespace dpt::kernels {

// out[N,OC] = inp[N,C] * weight[OC,C]^T + bias[OC]   (bias may be null)
template <typename T>
void linear_forward_cpu(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC);

// Adds into dinp [N,C] += dout * weight, dweight [OC,C] += dout^T * inp, dbias [OC] += sum_n dout.
// dbias may be null (no bias); dinp may be null (input needs no gradient).
template <typename T>
void linear_backward_cpu(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                         const T* weight, int N, int C, int OC);

}  // namespace dpt::kernels
