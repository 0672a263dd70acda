// Fused softmax + cross-entropy over the vocabulary, the language-model loss.
#pragma once

#include <cstdint>
#include "kernels/cuda_stream.h"

namespace dpt::kernels {

// [Padded vocabulary] Rows of logits (and probs, dlogits) are ld >= V elements apart. The
// language model pads its rows to a multiple of 64 (ModelConfig::padded_vocab: GPT-2's 50257
// becomes 50304), so that every row starts 16-byte aligned, the head's products get aligned
// leading dimensions, and the kernels here read whole 16-byte packs: the columns [V, ld) are
// masked (they take no part in the softmax, and the backward pass writes them 0 or leaves
// them). The parameters, checkpoints and exports keep the real V: only the activations pad.
// logits, probs [N,V] with row stride ld; targets [N] int32 in [0,V); losses [N].
// probs[n,:] = softmax(logits[n,:]) (max-subtracted); losses[n] = -log probs[n, targets[n]],
// computed as logsumexp - logit so that it stays finite when the probability underflows.
// A target outside [0,V) throws RuntimeFailure.
template <typename T>
void softmax_cross_entropy_forward_cpu(T* losses, T* probs, const T* logits, const int32_t* targets,
                                       int N, int V, int ld);

// dlogits[n,v] += dlosses[n] * (probs[n,v] - [v == targets[n]]).
// For the mean loss over N positions pass dlosses[n] = 1/N.
template <typename T>
void softmax_cross_entropy_backward_cpu(T* dlogits, const T* dlosses, const T* probs,
                                        const int32_t* targets, int N, int V, int ld);

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
// logits [N,V], rows ld apart (float or __nv_bfloat16); losses [N] and lse [N] fp32: lse[n] is the
// logsumexp of row n, kept for the backward pass instead of a [N,V] probability tensor.
template <typename T>
void softmax_cross_entropy_forward_cuda(float* losses, float* lse, const T* logits,
                                        const int32_t* targets, int N, int V, int ld,
                                        CudaStream stream);

// dlogits[n,v] = dloss * (exp(logits[n,v] - lse[n]) - [v == targets[n]]), WRITTEN (not added),
// and dlogits may alias logits (the model overwrites its logits in place). dloss is the
// gradient of every position's loss (1/N times the loss scale for a mean). Columns [V, ld) of
// dlogits may be written 0.
template <typename T>
void softmax_cross_entropy_backward_cuda(T* dlogits, const T* logits, const float* lse,
                                         const int32_t* targets, float dloss, int N, int V, int ld,
                                         CudaStream stream);

// *sum += sum of losses[0..n) in a fixed order (one block): the micro-batch's loss sum stays
// on the device until the step's end.
void loss_sum_accumulate_cuda(float* sum, const float* losses, int n, CudaStream stream);

}  // namespace dpt::kernels
