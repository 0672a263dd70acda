// The fixed order of named parameter tensors in the flat buffer.
#include "trainer/param_layout.h"

#include "common/errors.h"

namespace dpt::trainer {

ParamLayout::ParamLayout(const ModelConfig& cfg) {
  const size_t V = cfg.vocab_size, T = cfg.seq_len, C = cfg.d_model;
  add("wte.weight", {V, C});
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
  const double n = static_cast<double>(ParamLayout(cfg).total());
  return 6.0 * n + 6.0 * cfg.n_layer * cfg.d_model * static_cast<double>(cfg.seq_len);
}

}  // namespace dpt::trainer
