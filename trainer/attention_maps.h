// [Attention rollout] (Abnar and Zuidema, "Quantifying Attention Flow in Transformers", 2020):
// how much each input position flows into each output position through every layer. Per layer,
// the heads' attention is averaged, the residual connection added as the identity,
// W = 0.5 A + 0.5 I, and each row renormalized to sum to 1; the rollout is the product
// W_L ... W_2 W_1 (the last layer on the left), so row i says where output position i drew from.
#pragma once

#include <span>
#include <vector>

namespace dpt::trainer {

// att: [L, NH, T, T] row-stochastic attention probabilities of one sample. Returns [T, T].
// Rows of padding positions follow the same rule (their attention covers the valid keys).
std::vector<double> attention_rollout(std::span<const float> att, int L, int NH, int T);

}  // namespace dpt::trainer
