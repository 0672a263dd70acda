// Forward and backward of the GPT-style decoder over the CPU reference kernels.
#include "trainer/gpt.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/errors.h"
#include "common/rng.h"
#include "common/trace.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/encoder.h"
#include "kernels/gelu.h"
#include "kernels/layernorm.h"
#include "kernels/linear.h"
#include "kernels/residual.h"

namespace dpt::trainer {

namespace k = dpt::kernels;

namespace {
// Hands out consecutive slices of one buffer.
template <typename T>
struct Carver {
  std::vector<T>* buf;
  size_t used = 0;
  bool sizing = true;  // first pass counts, second pass hands out pointers
  T* take(size_t n) {
    T* p = sizing ? nullptr : buf->data() + used;
    used += n;
    return p;
  }
};
}  // namespace

template <typename T>
Gpt<T>::Gpt(const ModelConfig& cfg, int max_batch)
    : cfg_(cfg), layout_(cfg), max_batch_(max_batch) {
  cfg_.validate();
  DPT_CHECK(max_batch > 0, "max_batch must be positive");
  params_.assign(layout_.total(), T(0));
  grads_ = PageBuffer<T>(layout_.total());
  P_ = views(params_.data());
  G_ = views(grads_.data());
  inputs_.assign(static_cast<size_t>(max_batch) * cfg.seq_len, 0);
  targets_.assign(inputs_.size(), 0);

  const size_t B = max_batch, Tn = cfg.seq_len, C = cfg.d_model, V = cfg.vocab_size,
               NH = cfg.n_head, BT = B * Tn;
  layer_acts_.resize(cfg.n_layer);
  // Two passes over the same carving: the first sizes the buffers, the second assigns views.
  for (int pass = 0; pass < 2; ++pass) {
    Carver<T> a{&acts_, 0, pass == 0};
    encoded_ = a.take(BT * C);
    for (auto& la : layer_acts_) {
      la.ln1 = a.take(BT * C);
      la.ln1_mean = a.take(BT);
      la.ln1_rstd = a.take(BT);
      la.qkv = a.take(BT * 3 * C);
      la.att = a.take(B * NH * Tn * Tn);
      la.atty = a.take(BT * C);
      la.attproj = a.take(BT * C);
      la.res2 = a.take(BT * C);
      la.ln2 = a.take(BT * C);
      la.ln2_mean = a.take(BT);
      la.ln2_rstd = a.take(BT);
      la.fch = a.take(BT * 4 * C);
      la.fch_gelu = a.take(BT * 4 * C);
      la.fcproj = a.take(BT * C);
      la.res3 = a.take(BT * C);
    }
    lnf_ = a.take(BT * C);
    lnf_mean_ = a.take(BT);
    lnf_rstd_ = a.take(BT);
    logits_ = a.take(BT * V);
    probs_ = a.take(BT * V);
    losses_ = a.take(BT);

    Carver<T> d{&dacts_, 0, pass == 0};
    d_res_ = d.take(BT * C);
    d_ln_ = d.take(BT * C);
    d_qkv_ = d.take(BT * 3 * C);
    d_atty_ = d.take(BT * C);
    d_fch_gelu_ = d.take(BT * 4 * C);
    d_fch_ = d.take(BT * 4 * C);
    d_logits_ = d.take(BT * V);
    d_losses_ = d.take(BT);
    att_scratch_ = d.take(k::attention_backward_scratch_elems(B, Tn, NH));
    if (pass == 0) {
      acts_.assign(a.used, T(0));
      dacts_.assign(d.used, T(0));
    }
  }
}

template <typename T>
typename Gpt<T>::ModelViews Gpt<T>::views(T* base) const {
  auto at = [&](const std::string& n) { return base + layout_.get(n).offset; };
  ModelViews v{at("wte.weight"), at("wpe.weight"), at("ln_f.weight"), at("ln_f.bias"), {}};
  for (int l = 0; l < cfg_.n_layer; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".";
    v.layers.push_back({at(p + "ln1.weight"), at(p + "ln1.bias"), at(p + "attn.qkv.weight"),
                        at(p + "attn.qkv.bias"), at(p + "attn.proj.weight"),
                        at(p + "attn.proj.bias"), at(p + "ln2.weight"), at(p + "ln2.bias"),
                        at(p + "mlp.fc.weight"), at(p + "mlp.fc.bias"), at(p + "mlp.proj.weight"),
                        at(p + "mlp.proj.bias")});
  }
  return v;
}

template <typename T>
void init_gpt_params(const ParamLayout& layout, int n_layer, uint64_t seed, std::span<T> params) {
  DPT_CHECK(params.size() == layout.total(), "parameter buffer does not match the layout");
  const double std_base = 0.02;
  const double std_resid = 0.02 / std::sqrt(2.0 * n_layer);
  const auto& ts = layout.tensors();
  for (size_t i = 0; i < ts.size(); ++i) {
    const TensorView& t = ts[i];
    T* p = params.data() + t.offset;
    const bool is_ln = t.name.find("ln") != std::string::npos;
    const bool is_bias = t.name.size() > 5 && t.name.compare(t.name.size() - 5, 5, ".bias") == 0;
    if (is_ln && !is_bias) {
      std::fill(p, p + t.numel(), T(1));
    } else if (is_bias) {
      std::fill(p, p + t.numel(), T(0));
    } else {
      const bool resid_proj = t.name.find("attn.proj.weight") != std::string::npos ||
                              t.name.find("mlp.proj.weight") != std::string::npos;
      const double std_dev = resid_proj ? std_resid : std_base;
      // Stream = tensor index: every tensor draws independently of the others' sizes.
      for (size_t j = 0; j < t.numel(); ++j)
        p[j] = static_cast<T>(std_dev * random_normal(seed, i, j));
    }
  }
}
template void init_gpt_params<float>(const ParamLayout&, int, uint64_t, std::span<float>);
template void init_gpt_params<double>(const ParamLayout&, int, uint64_t, std::span<double>);

template <typename T>
void Gpt<T>::init_params(uint64_t seed) {
  init_gpt_params<T>(layout_, cfg_.n_layer, seed, params_);
}

template <typename T>
void Gpt<T>::zero_grads() {
  std::fill(grads_.begin(), grads_.end(), T(0));
}

template <typename T>
const T* Gpt<T>::block_input(int l) const {
  return l == 0 ? encoded_ : layer_acts_[l - 1].res3;
}

template <typename T>
double Gpt<T>::forward(const int32_t* inputs, const int32_t* targets, int batch) {
  DPT_CHECK(batch > 0 && batch <= max_batch_, "micro-batch " + std::to_string(batch) +
                                                  " outside [1, " + std::to_string(max_batch_) +
                                                  "] that the model was allocated for");
  const size_t n = static_cast<size_t>(batch) * cfg_.seq_len;
  std::copy(inputs, inputs + n, inputs_.begin());
  std::copy(targets, targets + n, targets_.begin());
  last_batch_ = batch;
  {
    const trace::Span span("embed fwd");
    embed_forward(batch);
  }
  for (int l = 0; l < cfg_.n_layer; ++l) {
    const trace::Span span("block %d fwd", trace::Track::compute, l);
    block_forward(l, batch);
  }
  const trace::Span span("head fwd");
  return head_forward(batch);
}

template <typename T>
void Gpt<T>::backward(double loss_scale, const GradsFinal& grads_final) {
  DPT_CHECK(last_batch_ > 0, "backward() called before forward()");
  const int batch = last_batch_;
  const size_t BTC = static_cast<size_t>(batch) * cfg_.seq_len * cfg_.d_model;
  auto offset = [&](const T* g) { return static_cast<size_t>(g - grads_.data()); };
  // populate_grads_in_backward: [from, to) is what backward writes next.
  auto populate = [&](size_t from, size_t to) {
    if (populate_grads_) grads_.populate(from, to - from);
  };
  std::fill(d_res_, d_res_ + BTC, T(0));
  // The head writes the tied token embedding (the buffer's start, with the position embedding
  // that embed_backward adds last) and ln_f (its end).
  populate(0, offset(cfg_.n_layer > 0 ? G_.layers[0].ln1_w : G_.lnf_w));
  populate(offset(G_.lnf_w), grads_.size());
  {
    const trace::Span span("head bwd");
    head_backward(loss_scale, d_res_, batch);
  }
  if (grads_final) grads_final(offset(G_.lnf_w));  // ln_f is the last tensor of the layout
  for (int l = cfg_.n_layer - 1; l >= 0; --l) {
    populate(offset(G_.layers[l].ln1_w),
             offset(l + 1 < cfg_.n_layer ? G_.layers[l + 1].ln1_w : G_.lnf_w));
    {
      const trace::Span span("block %d bwd", trace::Track::compute, l);
      block_backward(l, d_res_, batch);
    }
    if (grads_final) grads_final(offset(G_.layers[l].ln1_w));  // the block's first tensor
  }
  const trace::Span span("embed bwd");
  embed_backward(d_res_, batch);
}

// --- input embedding -------------------------------------------------------------------------

template <typename T>
void Gpt<T>::embed_forward(int batch) {
  k::encoder_forward_cpu(encoded_, inputs_.data(), P_.wte, P_.wpe, batch, cfg_.seq_len,
                         cfg_.d_model, cfg_.vocab_size);
}

template <typename T>
void Gpt<T>::embed_backward(const T* dx, int batch) {
  k::encoder_backward_cpu(G_.wte, G_.wpe, dx, inputs_.data(), batch, cfg_.seq_len, cfg_.d_model,
                          cfg_.vocab_size);
}

// --- trunk -----------------------------------------------------------------------------------

template <typename T>
void Gpt<T>::block_forward(int l, int batch) {
  const int N = batch * cfg_.seq_len, C = cfg_.d_model;
  const size_t NC = static_cast<size_t>(N) * C;
  const LayerActs& a = layer_acts_[l];
  const LayerParams& p = P_.layers[l];
  const T* x = block_input(l);
  // x + attn(ln1(x))
  k::layernorm_forward_cpu(a.ln1, a.ln1_mean, a.ln1_rstd, x, p.ln1_w, p.ln1_b, N, C);
  k::linear_forward_cpu(a.qkv, a.ln1, p.qkv_w, p.qkv_b, N, C, 3 * C);
  k::attention_forward_cpu(a.atty, a.att, a.qkv, batch, cfg_.seq_len, C, cfg_.n_head);
  k::linear_forward_cpu(a.attproj, a.atty, p.proj_w, p.proj_b, N, C, C);
  k::residual_forward_cpu(a.res2, x, a.attproj, NC);
  // res2 + mlp(ln2(res2))
  k::layernorm_forward_cpu(a.ln2, a.ln2_mean, a.ln2_rstd, a.res2, p.ln2_w, p.ln2_b, N, C);
  k::linear_forward_cpu(a.fch, a.ln2, p.fc_w, p.fc_b, N, C, 4 * C);
  k::gelu_forward_cpu(a.fch_gelu, a.fch, NC * 4);
  k::linear_forward_cpu(a.fcproj, a.fch_gelu, p.fcproj_w, p.fcproj_b, N, 4 * C, C);
  k::residual_forward_cpu(a.res3, a.res2, a.fcproj, NC);
}

// dres holds d loss / d res3 on entry and d loss / d x on exit. The residual adds pass it
// through unchanged; each branch adds its input gradient into it.
template <typename T>
void Gpt<T>::block_backward(int l, T* dres, int batch) {
  const int N = batch * cfg_.seq_len, C = cfg_.d_model;
  const size_t NC = static_cast<size_t>(N) * C;
  const LayerActs& a = layer_acts_[l];
  const LayerParams& p = P_.layers[l];
  const LayerParams& g = G_.layers[l];
  const T* x = block_input(l);
  // MLP branch: d fcproj = dres.
  std::fill(d_fch_gelu_, d_fch_gelu_ + 4 * NC, T(0));
  k::linear_backward_cpu(d_fch_gelu_, g.fcproj_w, g.fcproj_b, dres, a.fch_gelu, p.fcproj_w, N,
                         4 * C, C);
  std::fill(d_fch_, d_fch_ + 4 * NC, T(0));
  k::gelu_backward_cpu(d_fch_, a.fch, d_fch_gelu_, 4 * NC);
  std::fill(d_ln_, d_ln_ + NC, T(0));
  k::linear_backward_cpu(d_ln_, g.fc_w, g.fc_b, d_fch_, a.ln2, p.fc_w, N, C, 4 * C);
  k::layernorm_backward_cpu(dres, g.ln2_w, g.ln2_b, d_ln_, a.res2, p.ln2_w, a.ln2_mean, a.ln2_rstd,
                            N, C);
  // Attention branch: d attproj = dres (now d loss / d res2).
  std::fill(d_atty_, d_atty_ + NC, T(0));
  k::linear_backward_cpu(d_atty_, g.proj_w, g.proj_b, dres, a.atty, p.proj_w, N, C, C);
  std::fill(d_qkv_, d_qkv_ + 3 * NC, T(0));
  k::attention_backward_cpu(d_qkv_, att_scratch_, d_atty_, a.qkv, a.att, batch, cfg_.seq_len, C,
                            cfg_.n_head);
  std::fill(d_ln_, d_ln_ + NC, T(0));
  k::linear_backward_cpu(d_ln_, g.qkv_w, g.qkv_b, d_qkv_, a.ln1, p.qkv_w, N, C, 3 * C);
  k::layernorm_backward_cpu(dres, g.ln1_w, g.ln1_b, d_ln_, x, p.ln1_w, a.ln1_mean, a.ln1_rstd, N,
                            C);
}

// --- head: final LayerNorm, tied projection, softmax cross-entropy ---------------------------

template <typename T>
double Gpt<T>::head_forward(int batch) {
  const int N = batch * cfg_.seq_len, C = cfg_.d_model, V = cfg_.vocab_size;
  const T* x = block_input(cfg_.n_layer);
  k::layernorm_forward_cpu(lnf_, lnf_mean_, lnf_rstd_, x, P_.lnf_w, P_.lnf_b, N, C);
  // Tied output projection: logits = lnf . wte^T.
  k::linear_forward_cpu(logits_, lnf_, P_.wte, static_cast<T*>(nullptr), N, C, V);
  k::softmax_cross_entropy_forward_cpu(losses_, probs_, logits_, targets_.data(), N, V);
  double sum = 0.0;
  for (int i = 0; i < N; ++i)
    sum += static_cast<double>(losses_[i]);
  return sum / N;
}

template <typename T>
void Gpt<T>::head_backward(double loss_scale, T* dres, int batch) {
  const int N = batch * cfg_.seq_len, C = cfg_.d_model, V = cfg_.vocab_size;
  std::fill(d_losses_, d_losses_ + N, static_cast<T>(loss_scale / N));
  std::fill(d_logits_, d_logits_ + static_cast<size_t>(N) * V, T(0));
  k::softmax_cross_entropy_backward_cpu(d_logits_, d_losses_, probs_, targets_.data(), N, V);
  std::fill(d_ln_, d_ln_ + static_cast<size_t>(N) * C, T(0));
  k::linear_backward_cpu(d_ln_, G_.wte, static_cast<T*>(nullptr), d_logits_, lnf_, P_.wte, N, C, V);
  k::layernorm_backward_cpu(dres, G_.lnf_w, G_.lnf_b, d_ln_, block_input(cfg_.n_layer), P_.lnf_w,
                            lnf_mean_, lnf_rstd_, N, C);
}

template class Gpt<float>;
template class Gpt<double>;

}  // namespace dpt::trainer
