// [Patches] Images cut into non-overlapping P x P patches for the Vision Transformer's input
// (Dosovitskiy et al., arXiv:2010.11929): an image [H, W, C] (channels last, as image shards
// store it) becomes (H/P) x (W/P) patches in row-major patch order, each flattened in (row,
// column, channel) order into P*P*C values. H and W must be multiples of P.
#pragma once

#include "kernels/cuda_stream.h"

namespace dpt::kernels {

// out [B, (H/P)*(W/P), P*P*C] from img [B, H, W, C].
template <typename T>
void patches_forward_cpu(T* out, const T* img, int B, int H, int W, int C, int P);
// dimg[b, h, w, c] += the gradient of the patch value it became (a permutation's transpose).
template <typename T>
void patches_backward_cpu(T* dimg, const T* dout, int B, int H, int W, int C, int P);

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
template <typename T>  // float or __nv_bfloat16
void patches_forward_cuda(T* out, const T* img, int B, int H, int W, int C, int P,
                          CudaStream stream);
template <typename T>
void patches_backward_cuda(T* dimg, const T* dout, int B, int H, int W, int C, int P,
                           CudaStream stream);

// Throws UsageError unless every size is positive and P divides H and W.
void check_patch_shape(int B, int H, int W, int C, int P);

}  // namespace dpt::kernels
