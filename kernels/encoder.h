// Token + position embedding, the model's input layer.
#pragma once

#include <cstdint>
#include <vector>
#include "kernels/cuda_stream.h"

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

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
// T is float or __nv_bfloat16 for out, wte and wpe; tokens must already be checked against V
// (the caller checks them on the host before they are copied to the device).
template <typename T>
void encoder_forward_cuda(T* out, const int32_t* tokens, const T* wte, const T* wpe, int B, int Tn,
                          int C, CudaStream stream);

// [Embedding buckets] The deterministic scatter of the backward pass. The host sorts the B*T
// positions of a micro-batch by token once (encoder_buckets, a counting sort, stable): bucket j
// holds token bucket_token[j] at positions order[bucket_start[j] .. bucket_start[j+1]). Each
// bucket's rows are summed in position order, so the result does not depend on scheduling.
struct EmbeddingBuckets {
  std::vector<int32_t> order;         // [B*T] positions b*T+t, grouped by token
  std::vector<int32_t> bucket_start;  // [n_buckets + 1]
  std::vector<int32_t> bucket_token;  // [n_buckets]
};
void encoder_buckets(EmbeddingBuckets* out, const int32_t* tokens, int n, int V);

// dwte[tok,:] += sum over the bucket's positions p of dout[p,:]; dwpe[t,:] += sum_b dout[b,t,:].
// order, bucket_start and bucket_token are device copies of an EmbeddingBuckets.
template <typename T>
void encoder_backward_cuda(float* dwte, float* dwpe, const T* dout, const int32_t* order,
                           const int32_t* bucket_start, const int32_t* bucket_token, int n_buckets,
                           int B, int Tn, int C, CudaStream stream);

}  // namespace dpt::kernels
