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

// One block's tensors in a flat buffer laid out by a ParamLayout (parameters or gradients).
template <typename P>
struct BlockTensors {
  P *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
  P *ln2_w, *ln2_b, *fc_w, *fc_b, *fcproj_w, *fcproj_b;
};
// Every tensor of a [Model family] member in such a buffer; the parts the member lacks are null
// (wte without token inputs, in_w/in_b without image or series inputs, cls without a class
// token, head_* for the language model, whose head is tied to wte).
template <typename P>
struct ModelTensors {
  P *wte = nullptr, *in_w = nullptr, *in_b = nullptr, *cls = nullptr, *wpe = nullptr;
  P *lnf_w = nullptr, *lnf_b = nullptr, *head_w = nullptr, *head_b = nullptr;
  std::vector<BlockTensors<P>> blocks;
};
// Resolves every tensor of cfg's model (laid out as `layout`, made from cfg) at base: the
// models on both processors and the decoders read their tensors through this one place.
template <typename P>
ModelTensors<P> model_tensors(const ParamLayout& layout, const ModelConfig& cfg, P* base) {
  auto at = [&](const std::string& n) { return base + layout.get(n).offset; };
  ModelTensors<P> v;
  switch (cfg.input) {
    case InputKind::tokens:
      v.wte = at("wte.weight");
      break;
    case InputKind::image:
      v.in_w = at("patch_embed.weight");
      v.in_b = at("patch_embed.bias");
      break;
    case InputKind::series:
      v.in_w = at("input_proj.weight");
      v.in_b = at("input_proj.bias");
      break;
  }
  if (cfg.has_cls()) v.cls = at("cls_token");
  v.wpe = at("wpe.weight");
  v.lnf_w = at("ln_f.weight");
  v.lnf_b = at("ln_f.bias");
  if (cfg.task != Task::lm) {
    v.head_w = at("head.weight");
    v.head_b = at("head.bias");
  }
  for (int l = 0; l < cfg.n_layer; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".";
    v.blocks.push_back({at(p + "ln1.weight"), at(p + "ln1.bias"), at(p + "attn.qkv.weight"),
                        at(p + "attn.qkv.bias"), at(p + "attn.proj.weight"),
                        at(p + "attn.proj.bias"), at(p + "ln2.weight"), at(p + "ln2.bias"),
                        at(p + "mlp.fc.weight"), at(p + "mlp.fc.bias"), at(p + "mlp.proj.weight"),
                        at(p + "mlp.proj.bias")});
  }
  return v;
}

// Model FLOPs per position of a training step (forward + backward), as llm.c counts them:
// 6 N (N = every parameter) + 6 L C T (attention scores and weighted sums). Without the tied
// language-model head, N leaves out the lookup tables and counts the per-sample head once
// per sample.
double model_flops_per_token(const ModelConfig& cfg);

}  // namespace dpt::trainer
