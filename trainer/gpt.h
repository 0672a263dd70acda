// A GPT-style decoder on the CPU: token + position embedding, L pre-LayerNorm blocks of causal
// self-attention and a GELU MLP (4x width), a final LayerNorm, and an output projection tied
// to the token embedding. T is float for training and double for gradient checks.
//
// The model is three parts, each with its own forward and backward: the input embedding
// (embed_*), the trunk of blocks (block_*, ln_f), and the head (head_*: tied projection +
// softmax cross-entropy). A classification head or a patch embedding replaces one part and its
// entries in ParamLayout; the trunk does not change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "common/page_buffer.h"
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

  // inputs, targets [batch, seq_len]; returns the mean cross-entropy over batch * seq_len.
  double forward(const int32_t* inputs, const int32_t* targets, int batch);
  // Every gradient at a flat offset >= frontier is final for the step ([Gradient buckets]).
  using GradsFinal = std::function<void(size_t frontier)>;
  // Adds d(loss_scale * mean loss)/d(params) into grads() for the last forward(). When
  // `grads_final` is set, calls it after the head and after each block, with the frontier of
  // the gradients that backward will not touch again (never 0: the tied token embedding is
  // final only when backward returns).
  void backward(double loss_scale, const GradsFinal& grads_final = {});

 private:
  struct LayerActs {  // forward activations of one block
    T *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *attproj, *res2;
    T *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu, *fcproj, *res3;
  };
  struct LayerParams {  // views of one block's tensors in params_ or grads_
    T *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    T *ln2_w, *ln2_b, *fc_w, *fc_b, *fcproj_w, *fcproj_b;
  };
  struct ModelViews {  // every tensor of params_ or grads_, resolved once at construction
    T *wte, *wpe, *lnf_w, *lnf_b;
    std::vector<LayerParams> layers;
  };
  ModelViews views(T* base) const;
  const T* block_input(int l) const;

  void embed_forward(int batch);
  void embed_backward(const T* dx, int batch);
  void block_forward(int l, int batch);
  void block_backward(int l, T* dres, int batch);  // dres: gradient of the block's output
  double head_forward(int batch);
  void head_backward(double loss_scale, T* dres, int batch);

  ModelViews P_;  // into params_
  ModelViews G_;  // into grads_
  std::vector<LayerActs> layer_acts_;
  T *encoded_, *lnf_, *lnf_mean_, *lnf_rstd_, *logits_, *probs_, *losses_;
  T *d_res_, *d_ln_, *d_qkv_, *d_atty_, *d_fch_gelu_, *d_fch_, *d_logits_, *d_losses_,
      *att_scratch_;

  ModelConfig cfg_;
  ParamLayout layout_;
  int max_batch_;
  std::vector<T> params_;
  PageBuffer<T> grads_;   // pages of their own, so that stage 2 can give them back
  std::vector<T> acts_;   // forward activations
  std::vector<T> dacts_;  // gradient scratch, reused by every layer
  // What the last forward() saw, kept for backward().
  std::vector<int32_t> inputs_;
  std::vector<int32_t> targets_;
  int last_batch_ = 0;
  bool populate_grads_ = false;
};

}  // namespace dpt::trainer
