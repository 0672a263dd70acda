// [Attention rollout] (Abnar and Zuidema, "Quantifying Attention Flow in Transformers", 2020):
// how much each input position flows into each output position through every layer. Per layer,
// the heads' attention is averaged, the residual connection added as the identity,
// W = 0.5 A + 0.5 I, and each row renormalized to sum to 1; the rollout is the product
// W_L ... W_2 W_1 (the last layer on the left), so row i says where output position i drew from.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "datasets/batch.h"
#include "trainer/model_config.h"
#include "trainer/train_config.h"

namespace dpt::trainer {

// att: [L, NH, T, T] row-stochastic attention probabilities of one sample. Returns [T, T].
// Rows of padding positions follow the same rule (their attention covers the valid keys).
std::vector<double> attention_rollout(std::span<const float> att, int L, int NH, int T);

// The model bin/attention reads maps from, on either processor: the training model's forward
// pass (gpt.h, gpt_cuda.h) on batches of up to max_batch samples.
class MapsModel {
 public:
  virtual ~MapsModel() = default;
  virtual void forward(const datasets::Batch& batch) = 0;
  // Layer l's attention probabilities [rows, NH, T, T] of the last forward (T: positions()).
  virtual void attention(int l, float* out) = 0;
  // The head's outputs: [rows, K] (classify, regress) or the logits [rows, seq_len, V] (lm).
  virtual void outputs(float* out) = 0;
  virtual std::string describe() const = 0;
};

std::unique_ptr<MapsModel> make_cpu_maps_model(const ModelConfig& cfg,
                                               std::span<const float> params, int max_batch);
// On GPU `gpu` in `precision`; attention_maps_cuda.cpp. Throws UsageError without CUDA.
std::unique_ptr<MapsModel> make_cuda_maps_model(const ModelConfig& cfg,
                                                std::span<const float> params, int max_batch,
                                                int gpu, Precision precision);

}  // namespace dpt::trainer
