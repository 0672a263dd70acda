// [Positions] The trunk's input rows of a classification or regression model from the embedded
// inputs (projected patches, time steps or looked-up tokens): with a class token,
// x[b, 0] = cls + wpe[0] and x[b, 1 + t] = emb[b, t] + wpe[1 + t]; without one,
// x[b, t] = emb[b, t] + wpe[t]. Rows per sequence: Tin + (cls ? 1 : 0).
#pragma once

#include "kernels/cuda_stream.h"

namespace dpt::kernels {

// x [B, Tin + has_cls, C] from emb [B, Tin, C], cls [C] (null: none) and wpe [Tin + has_cls, C].
template <typename T>
void positions_forward_cpu(T* x, const T* emb, const T* cls, const T* wpe, int B, int Tin, int C);
// Adds d loss / d (emb, cls, wpe) for d loss / d x: demb gets its rows, dcls and dwpe the sums
// over the batch (in b order). dcls null when there is no class token; demb may be null (the
// inputs are data).
template <typename T>
void positions_backward_cpu(T* demb, T* dcls, T* dwpe, const T* dx, int B, int Tin, int C);

// --- CUDA ([CUDA kernel contract], kernels/README.md); dcls and dwpe are fp32 --------------
template <typename T>  // float or __nv_bfloat16
void positions_forward_cuda(T* x, const T* emb, const T* cls, const T* wpe, int B, int Tin, int C,
                            CudaStream stream);
template <typename T>
void positions_backward_cuda(T* demb, float* dcls, float* dwpe, const T* dx, int B, int Tin, int C,
                             CudaStream stream);

}  // namespace dpt::kernels
