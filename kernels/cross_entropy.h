// Fused softmax + cross-entropy over the vocabulary, the language-model loss.
#pragma once

#include <cstdint>

namespace dpt::kernels {

// logits, probs [N,V]; targets [N] int32 in [0,V); losses [N].
// probs[n,:] = softmax(logits[n,:]) (max-subtracted); losses[n] = -log probs[n, targets[n]],
// computed as logsumexp - logit so that it stays finite when the probability underflows.
// A target outside [0,V) throws RuntimeFailure.
template <typename T>
void softmax_cross_entropy_forward_cpu(T* losses, T* probs, const T* logits, const int32_t* targets,
                                       int N, int V);

// dlogits[n,v] += dlosses[n] * (probs[n,v] - [v == targets[n]]).
// For the mean loss over N positions pass dlosses[n] = 1/N.
template <typename T>
void softmax_cross_entropy_backward_cpu(T* dlogits, const T* dlosses, const T* probs,
                                        const int32_t* targets, int N, int V);

}  // namespace dpt::kernels
