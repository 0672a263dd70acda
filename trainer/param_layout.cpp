// The fixed order of named parameter tensors in the flat buffer.
#include "trainer/param_layout.h"

#include "common/errors.h"

namespace dpt::trainer {

ParamLayout::ParamLayout(const ModelConfig& cfg) {
  const size_t V = cfg.vocab_size, T = cfg.positions(), C = cfg.d_model;
  switch (cfg.input) {
    case InputKind::tokens:
      add("wte.weight", {V, C});
      break;
    case InputKind::image:
      add("patch_embed.weight", {C, static_cast<size_t>(cfg.input_width())});
      add("patch_embed.bias", {C});
      break;
    case InputKind::series:
      add("input_proj.weight", {C, static_cast<size_t>(cfg.input_width())});
      add("input_proj.bias", {C});
      break;
  }
  if (cfg.has_cls()) add("cls_token", {C});
  add("wpe.weight", {T, C});
  for (int l = 0; l < cfg.n_layer; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".";
    add(p + "ln1.weight", {C});
    add(p + "ln1.bias", {C});
    add(p + "attn.qkv.weight", {3 * C, C});
    add(p + "attn.qkv.bias", {3 * C});
    add(p + "attn.proj.weight", {C, C});
    add(p + "attn.proj.bias", {C});
    add(p + "ln2.weight", {C});
    add(p + "ln2.bias", {C});
    add(p + "mlp.fc.weight", {4 * C, C});
    add(p + "mlp.fc.bias", {4 * C});
    add(p + "mlp.proj.weight", {C, 4 * C});
    add(p + "mlp.proj.bias", {C});
  }
  add("ln_f.weight", {C});
  add("ln_f.bias", {C});
  if (cfg.task != Task::lm) {
    const size_t K = cfg.num_outputs;
    add("head.weight", {K, C});
    add("head.bias", {K});
  }
}

void ParamLayout::add(std::string name, std::vector<size_t> shape) {
  TensorView v{std::move(name), total_, std::move(shape)};
  total_ += v.numel();
  tensors_.push_back(std::move(v));
}

const TensorView& ParamLayout::get(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return t;
  DPT_CHECK(false, "no parameter tensor named '" + name + "'");
  __builtin_unreachable();
}

double model_flops_per_token(const ModelConfig& cfg) {
  const ParamLayout layout(cfg);
  double n = static_cast<double>(layout.total());
  if (cfg.task != Task::lm) {
    // Without the tied head, the lookups (token and position embeddings, class token) are no
    // products; the head runs once per sample, not per position.
    for (const TensorView& t : layout.tensors()) {
      if (t.name == "wte.weight" || t.name == "wpe.weight" || t.name == "cls_token")
        n -= static_cast<double>(t.numel());
      if (t.name.rfind("head.", 0) == 0)
        n -= static_cast<double>(t.numel()) * (1.0 - 1.0 / cfg.positions());
    }
  }
  return 6.0 * n + 6.0 * cfg.n_layer * cfg.d_model * static_cast<double>(cfg.positions());
}

}  // namespace dpt::trainer
