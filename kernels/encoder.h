// Token + position embedding, the model's input layer.
#pragma once

#include <cstdint>

namespace dpt::kernels {

// out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]
// tokens [B,T] int32, each in [0,V); wte [V,C]; wpe [>=T,C] (rows 0..T-1 used); out [B,T,C].
// A token outside [0,V) throws RuntimeFailure before anything is read.
template <typename T>
void encoder_forward_cpu(T* out, const int32_t* tokens, const T* wte, const T* wpe, int B, int Tn,
                         int C, int V);

// dwte[tokens[b,t],:] += dout[b,t,:]; dwpe[t,:] += sum_b dout[b,t,:].
template <typename T>
void encoder_backward_cpu(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int B, int Tn,
                          int C, int V);

}  // namespace dpt::kernels
