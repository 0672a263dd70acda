// [Parameter layout] All parameters live in one flat buffer and all gradients in another of the
// same size and layout; named views (offset, shape) into them serve the model, the optimizer,
// communication (one tensor) and checkpoints alike. The order is fixed and identical on every
// rank: the input embedding (wte.weight for tokens, patch_embed.* for images, input_proj.* for
// series), cls_token when a class token leads the sequence, wpe.weight, then per block ln1,
// attn.qkv, attn.proj, ln2, mlp.fc, mlp.proj, then ln_f, then the classification or regression
// head (head.weight, head.bias; the language model's head is tied to wte). The head comes last
// so that backward finishes the buffer's end first ([Gradient buckets]).
//
// [Weight decay rule] AdamW decays every tensor with two or more dimensions (the linear
// layers' weight matrices and both embeddings, as GPT-2/nanoGPT); biases and LayerNorm
// parameters (one dimension) are not decayed.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/tensor_view.h"
#include "trainer/model_config.h"

namespace dpt::trainer {

// [Weight decay rule]: tensors of two or more dimensions decay.
inline bool decays(const TensorView& t) {
  return t.shape.size() >= 2;
}

class ParamLayout {
 public:
  explicit ParamLayout(const ModelConfig& cfg);

  size_t total() const { return total_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView& get(const std::string& name) const;  // throws if absent

 private:
  void add(std::string name, std::vector<size_t> shape);
  std::vector<TensorView> tensors_;
  size_t total_ = 0;
};

// Model FLOPs per position of a training step (forward + backward), as llm.c counts them:
// 6 N (N = every parameter) + 6 L C T (attention scores and weighted sums). Without the tied
// language-model head, N leaves out the lookup tables and counts the per-sample head once
// per sample.
double model_flops_per_token(const ModelConfig& cfg);

}  // namespace dpt::trainer
