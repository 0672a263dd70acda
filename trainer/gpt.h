// The attention model on the CPU. T is float for training and double for gradient checks.
//
// [Model family] One transformer trunk (L pre-LayerNorm blocks of self-attention and a GELU MLP
// of 4x width, then a final LayerNorm) between a replaceable input and a replaceable head:
// - inputs: token embedding (wte); patch embedding for images (P x P patches flattened and
//   projected, as the Vision Transformer); a linear projection of each time step's F features
//   for series. A learned position embedding is added to every row; classification and
//   regression with --pool cls put a learned class token first ([Positions]).
// - attention: causal for language modelling; bidirectional otherwise, with padding masked out
//   when texts carry lengths ([Attention mask]).
// - heads: language modelling projects every row onto the tied token embedding with softmax
//   cross-entropy against the next token (the GPT-2 decoder of round one, unchanged);
//   classification and regression pool the rows (the class token's, or the mean of the valid
//   ones: [Pooling]) and apply a linear head with softmax cross-entropy over the classes or
//   mean squared error over the targets ([Mean squared error]).
// A fix to the trunk serves every task. Each part has its own forward and backward: embed_*,
// block_* and head_*.
//
// [Attention choice] --attention picks how each block computes self-attention: unfused
// (attention.h: the [B,NH,T,T] probabilities kept for backward and for attention maps) or
// fused (flash_attention.h: [Tiled attention], one log-sum-exp per query row kept, the
// probabilities recomputed in backward). auto is unfused on the CPU, whose unfused path is the
// reference every other is checked against, and fused on the GPU where the head size allows
// (gpt_cuda.h). Either computes the same function; tests hold the losses equal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "common/page_buffer.h"
#include "datasets/batch.h"
#include "kernels/attention.h"
#include "trainer/model_config.h"
#include "trainer/param_layout.h"

namespace dpt::trainer {

// GPT-2 initialization of a flat parameter buffer laid out by `layout` from counter-based
// random numbers (depends on seed only): weights N(0, 0.02), residual projections
// N(0, 0.02 / sqrt(2 L)), biases 0, LayerNorm 1 and 0. Every replica starts from this.
template <typename T>
void init_gpt_params(const ParamLayout& layout, int n_layer, uint64_t seed, std::span<T> params);

template <typename T>
class Gpt {
 public:
  // Allocates parameters, gradients and activations for micro-batches of up to max_batch
  // sequences, once; forward and backward allocate nothing.
  Gpt(const ModelConfig& cfg, int max_batch);
  Gpt(const Gpt&) = delete;
  Gpt& operator=(const Gpt&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  std::span<T> params() { return params_; }
  std::span<T> grads() { return {grads_.data(), grads_.size()}; }
  std::span<const T> params() const { return params_; }
  std::span<const T> grads() const { return {grads_.data(), grads_.size()}; }

  // Forward activations and backward scratch, as allocated ([Memory plan]).
  size_t activation_bytes() const { return (acts_.size() + dacts_.size()) * sizeof(T); }
  // init_gpt_params into params().
  void init_params(uint64_t seed);
  void zero_grads();
  // Gives back the memory of the whole pages of gradient elements [first, first + count): they
  // read as zero afterwards ([ZeRO] stage 2 keeps only the buckets in flight). Returns bytes.
  size_t release_grads(size_t first, size_t count) { return grads_.release(first, count); }
  // When the caller gives gradient pages back ([ZeRO] stage 2), backward backs each part of the
  // gradient with memory in one call just before writing it (the head's tensors, then each
  // block's) instead of a fault per page, two where it adds into a given-back page (the zero
  // page, then a copy).
  void populate_grads_in_backward(bool on) { populate_grads_ = on; }
  // Bytes of the gradient that hold memory now (stage 2 gives pages back).
  size_t grads_resident_bytes() { return grads_.resident_bytes(); }
  // Bytes of the gradient's mapping: every page, as when all are written.
  size_t grads_mapped_bytes() const { return grads_.mapped_bytes(); }

  // The mean loss of the batch ([Batch]; its fields as the task reads them): the mean
  // cross-entropy over every position (lm) or over the samples (classify), or the mean over
  // samples of the mean squared error over the targets (regress).
  double forward(const datasets::Batch& batch);
  // Language modelling: inputs, targets [batch, seq_len].
  double forward(const int32_t* inputs, const int32_t* targets, int batch) {
    return forward(datasets::Batch{batch, inputs, nullptr, nullptr, targets, nullptr});
  }
  // The head's outputs of the last forward() for classification and regression: [batch, K]
  // logits or predictions (empty for language modelling).
  std::span<const T> outputs() const;
  // Language modelling: the logits [batch, seq_len, V] of the last forward(), without the
  // padding of their rows ([Padded vocabulary]).
  std::vector<T> lm_logits() const;
  // Layer l's attention probabilities [batch, NH, T, T] of the last forward() ([Attention
  // mask]: rows hold the keys each query sees, the rest exactly 0). Unfused attention only
  // ([Attention choice]): fused attention keeps no probabilities.
  std::span<const T> attention(int l) const;
  // Whether the blocks run fused attention ([Attention choice]).
  bool fused_attention() const { return fused_; }
  // Every gradient at a flat offset >= frontier is final for the step ([Gradient buckets]).
  using GradsFinal = std::function<void(size_t frontier)>;
  // Adds d(loss_scale * mean loss)/d(params) into grads() for the last forward(). When
  // `grads_final` is set, calls it after the head and after each block, with the frontier of
  // the gradients that backward will not touch again (never 0: the tied token embedding is
  // final only when backward returns).
  void backward(double loss_scale, const GradsFinal& grads_final = {});

 private:
  struct LayerActs {  // forward activations of one block
    // att: the probabilities [B,NH,T,T] (unfused), or the rows' log-sum-exp [B,NH,T] (fused).
    T *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *attproj, *res2;
    T *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu, *fcproj, *res3;
  };
  using LayerParams = BlockTensors<T>;  // views of one block's tensors in params_ or grads_
  using ModelViews = ModelTensors<T>;   // every tensor, resolved once at construction
  const T* block_input(int l) const;

  void embed_forward(int batch);
  void embed_backward(const T* dx, int batch);
  void block_forward(int l, int batch);
  void block_backward(int l, T* dres, int batch);  // dres: gradient of the block's output
  double head_forward(int batch);
  void head_backward(double loss_scale, T* dres, int batch);
  double pooled_head_forward(int batch);  // classification and regression
  double mean_loss(int n) const;          // of losses_[0, n)
  void pooled_head_backward(double loss_scale, T* dres, int batch);
  const int32_t* lengths() const { return has_lengths_ ? lengths_.data() : nullptr; }
  kernels::AttentionMask mask() const { return {cfg_.causal(), lengths()}; }

  ModelViews P_;  // into params_
  ModelViews G_;  // into grads_
  std::vector<LayerActs> layer_acts_;
  T *encoded_, *lnf_, *lnf_mean_, *lnf_rstd_, *logits_, *probs_, *losses_;
  T *d_res_, *d_ln_, *d_qkv_, *d_atty_, *d_fch_gelu_, *d_fch_, *d_logits_, *d_losses_,
      *att_scratch_ = nullptr;
  // Classification and regression: embedded inputs [B, Tin, C] (and their patches [B, Tin,
  // P*P*C]), a zero position table for the token lookup, pooled rows [B, C], and their
  // gradients.
  T *emb_ = nullptr, *patches_ = nullptr, *zero_pos_ = nullptr, *pooled_ = nullptr;
  T *d_emb_ = nullptr, *d_zero_pos_ = nullptr, *d_pooled_ = nullptr;

  ModelConfig cfg_;
  ParamLayout layout_;
  int max_batch_;
  bool fused_ = false;  // [Attention choice]
  std::vector<T> params_;
  PageBuffer<T> grads_;   // pages of their own, so that stage 2 can give them back
  std::vector<T> acts_;   // forward activations
  std::vector<T> dacts_;  // gradient scratch, reused by every layer
  // What the last forward() saw, kept for backward().
  std::vector<int32_t> inputs_;   // token ids [B, T]
  std::vector<int32_t> targets_;  // next tokens [B, T] (lm) or classes [B] (classify)
  std::vector<T> values_;         // images [B, H, W, C] or series [B, T, F]
  std::vector<T> reg_targets_;    // regression targets [B, K]
  std::vector<int32_t> lengths_;  // valid rows of each sequence (class token included)
  bool has_lengths_ = false;
  int last_batch_ = 0;
  bool populate_grads_ = false;
};

}  // namespace dpt::trainer
