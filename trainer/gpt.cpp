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
#include "kernels/flash_attention.h"
#include "kernels/gelu.h"
#include "kernels/layernorm.h"
#include "kernels/linear.h"
#include "kernels/mse.h"
#include "kernels/patches.h"
#include "kernels/pooling.h"
#include "kernels/positions.h"
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
  fused_ = cfg_.attention == AttentionImpl::fused;  // auto: unfused on the CPU
  params_.assign(layout_.total(), T(0));
  grads_ = PageBuffer<T>(layout_.total());
  P_ = model_tensors(layout_, cfg_, params_.data());
  G_ = model_tensors(layout_, cfg_, grads_.data());
  const bool lm = cfg.task == Task::lm;
  const size_t B = max_batch, Tn = cfg.positions(), C = cfg.d_model, NH = cfg.n_head, BT = B * Tn,
               Tin = cfg.seq_len, K = cfg.num_outputs;
  if (cfg.input == InputKind::tokens) inputs_.assign(B * Tin, 0);
  targets_.assign(lm ? B * Tin : B, 0);
  if (cfg.input != InputKind::tokens) values_.assign(B * cfg.input_values(), T(0));
  if (cfg.task == Task::regress) reg_targets_.assign(B * K, T(0));
  lengths_.assign(B, 0);
  // Head outputs: padded_vocab() logits per position (lm, [Padded vocabulary]), K per sample.
  const size_t outs = lm ? BT * cfg.padded_vocab() : B * K;
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
      la.att = a.take(fused_ ? B * NH * Tn : B * NH * Tn * Tn);
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
    logits_ = a.take(outs);
    probs_ = a.take(outs);
    losses_ = a.take(lm ? BT : B);
    if (!lm) {
      emb_ = a.take(B * Tin * C);
      if (cfg.input == InputKind::image) patches_ = a.take(B * Tin * cfg.input_width());
      if (cfg.input == InputKind::tokens) zero_pos_ = a.take(Tin * C);
      pooled_ = a.take(B * C);
    }

    Carver<T> d{&dacts_, 0, pass == 0};
    d_res_ = d.take(BT * C);
    d_ln_ = d.take(BT * C);
    d_qkv_ = d.take(BT * 3 * C);
    d_atty_ = d.take(BT * C);
    d_fch_gelu_ = d.take(BT * 4 * C);
    d_fch_ = d.take(BT * 4 * C);
    d_logits_ = d.take(outs);
    d_losses_ = d.take(lm ? BT : B);
    if (!lm) {
      d_emb_ = d.take(B * Tin * C);
      if (cfg.input == InputKind::tokens) d_zero_pos_ = d.take(Tin * C);
      d_pooled_ = d.take(B * C);
    }
    if (!fused_) att_scratch_ = d.take(k::attention_backward_scratch_elems(B, Tn, NH));
    if (pass == 0) {
      acts_.assign(a.used, T(0));
      dacts_.assign(d.used, T(0));
    }
  }
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
std::span<const T> Gpt<T>::attention(int l) const {
  DPT_CHECK(!fused_,
            "attention probabilities: fused attention keeps none; build the model with "
            "--attention unfused ([Attention choice])");
  const size_t T_ = cfg_.positions();
  return {layer_acts_.at(l).att, static_cast<size_t>(last_batch_) * cfg_.n_head * T_ * T_};
}

template <typename T>
std::vector<T> Gpt<T>::lm_logits() const {
  if (cfg_.task != Task::lm) return {};
  const size_t rows = static_cast<size_t>(last_batch_) * cfg_.seq_len, V = cfg_.vocab_size,
               Vp = cfg_.padded_vocab();
  std::vector<T> out(rows * V);
  for (size_t r = 0; r < rows; ++r)
    std::copy_n(logits_ + r * Vp, V, out.begin() + static_cast<std::ptrdiff_t>(r * V));
  return out;
}

template <typename T>
std::span<const T> Gpt<T>::outputs() const {
  if (cfg_.task == Task::lm) return {};
  return {logits_, static_cast<size_t>(last_batch_) * cfg_.num_outputs};
}

template <typename T>
double Gpt<T>::forward(const datasets::Batch& in) {
  const int batch = in.rows;
  DPT_CHECK(batch > 0 && batch <= max_batch_, "micro-batch " + std::to_string(batch) +
                                                  " outside [1, " + std::to_string(max_batch_) +
                                                  "] that the model was allocated for");
  const size_t B = batch, Tin = cfg_.seq_len;
  auto need = [](const void* p, const char* what) {
    DPT_CHECK(p != nullptr, std::string("the batch lacks ") + what + " that the model reads");
  };
  if (cfg_.input == InputKind::tokens) {
    need(in.tokens, "token ids");
    std::copy(in.tokens, in.tokens + B * Tin, inputs_.begin());
  } else {
    need(in.values, "input values");
    std::transform(in.values, in.values + B * cfg_.input_values(), values_.begin(),
                   [](float v) { return static_cast<T>(v); });
  }
  if (cfg_.task == Task::regress) {
    need(in.targets, "regression targets");
    std::transform(in.targets, in.targets + B * cfg_.num_outputs, reg_targets_.begin(),
                   [](float v) { return static_cast<T>(v); });
  } else {
    need(in.labels, "labels");
    const size_t n = cfg_.task == Task::lm ? B * Tin : B;
    std::copy(in.labels, in.labels + n, targets_.begin());
  }
  // The trunk's valid rows: the text's length, and the class token before it.
  has_lengths_ = cfg_.task != Task::lm && in.lengths != nullptr;
  if (has_lengths_) {
    const int off = cfg_.has_cls() ? 1 : 0;
    for (size_t b = 0; b < B; ++b) {
      DPT_CHECK(in.lengths[b] >= 1 && in.lengths[b] <= cfg_.seq_len,
                "length " + std::to_string(in.lengths[b]) + " of row " + std::to_string(b) +
                    " outside [1, " + std::to_string(cfg_.seq_len) + "]");
      lengths_[b] = in.lengths[b] + off;
    }
  }
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
  return cfg_.task == Task::lm ? head_forward(batch) : pooled_head_forward(batch);
}

template <typename T>
void Gpt<T>::backward(double loss_scale, const GradsFinal& grads_final) {
  DPT_CHECK(last_batch_ > 0, "backward() called before forward()");
  const int batch = last_batch_;
  const size_t BTC = static_cast<size_t>(batch) * cfg_.positions() * cfg_.d_model;
  const bool lm = cfg_.task == Task::lm;
  auto offset = [&](const T* g) { return static_cast<size_t>(g - grads_.data()); };
  // populate_grads_in_backward: [from, to) is what backward writes next.
  auto populate = [&](size_t from, size_t to) {
    if (populate_grads_) grads_.populate(from, to - from);
  };
  std::fill(d_res_, d_res_ + BTC, T(0));
  // The language model's head writes the tied token embedding (the buffer's start, with the
  // position embedding that embed_backward adds last); every head writes ln_f and what follows
  // it (the buffer's end).
  const size_t trunk_start = offset(cfg_.n_layer > 0 ? G_.blocks[0].ln1_w : G_.lnf_w);
  if (lm) populate(0, trunk_start);
  populate(offset(G_.lnf_w), grads_.size());
  {
    const trace::Span span("head bwd");
    if (lm) {
      head_backward(loss_scale, d_res_, batch);
    } else {
      pooled_head_backward(loss_scale, d_res_, batch);
    }
  }
  if (grads_final) grads_final(offset(G_.lnf_w));  // ln_f is the last tensor of the layout
  for (int l = cfg_.n_layer - 1; l >= 0; --l) {
    populate(offset(G_.blocks[l].ln1_w),
             offset(l + 1 < cfg_.n_layer ? G_.blocks[l + 1].ln1_w : G_.lnf_w));
    {
      const trace::Span span("block %d bwd", trace::Track::compute, l);
      block_backward(l, d_res_, batch);
    }
    if (grads_final) grads_final(offset(G_.blocks[l].ln1_w));  // the block's first tensor
  }
  if (!lm) populate(0, trunk_start);
  const trace::Span span("embed bwd");
  embed_backward(d_res_, batch);
}

// --- input embedding -------------------------------------------------------------------------

template <typename T>
void Gpt<T>::embed_forward(int batch) {
  const int Tin = cfg_.seq_len, C = cfg_.d_model, V = cfg_.vocab_size;
  if (cfg_.task == Task::lm) {
    k::encoder_forward_cpu(encoded_, inputs_.data(), P_.wte, P_.wpe, batch, Tin, C, V);
    return;
  }
  const int N = batch * Tin, W = cfg_.input_width();
  switch (cfg_.input) {
    case InputKind::tokens:
      // The lookup alone (a zero position table): [Positions] adds the positions.
      k::encoder_forward_cpu(emb_, inputs_.data(), P_.wte, zero_pos_, batch, Tin, C, V);
      break;
    case InputKind::image:
      k::patches_forward_cpu(patches_, values_.data(), batch, cfg_.image_h, cfg_.image_w,
                             cfg_.channels, cfg_.patch);
      k::linear_forward_cpu(emb_, patches_, P_.in_w, P_.in_b, N, W, C);
      break;
    case InputKind::series:
      k::linear_forward_cpu(emb_, values_.data(), P_.in_w, P_.in_b, N, W, C);
      break;
  }
  k::positions_forward_cpu(encoded_, emb_, P_.cls, P_.wpe, batch, Tin, C);
}

template <typename T>
void Gpt<T>::embed_backward(const T* dx, int batch) {
  const int Tin = cfg_.seq_len, C = cfg_.d_model, V = cfg_.vocab_size;
  if (cfg_.task == Task::lm) {
    k::encoder_backward_cpu(G_.wte, G_.wpe, dx, inputs_.data(), batch, Tin, C, V);
    return;
  }
  const int N = batch * Tin, W = cfg_.input_width();
  std::fill(d_emb_, d_emb_ + static_cast<size_t>(N) * C, T(0));
  k::positions_backward_cpu(d_emb_, G_.cls, G_.wpe, dx, batch, Tin, C);
  // The inputs are data: no gradient flows into them.
  switch (cfg_.input) {
    case InputKind::tokens:
      std::fill(d_zero_pos_, d_zero_pos_ + static_cast<size_t>(Tin) * C, T(0));  // discarded
      k::encoder_backward_cpu(G_.wte, d_zero_pos_, d_emb_, inputs_.data(), batch, Tin, C, V);
      break;
    case InputKind::image:
      k::linear_backward_cpu(static_cast<T*>(nullptr), G_.in_w, G_.in_b, d_emb_, patches_, P_.in_w,
                             N, W, C);
      break;
    case InputKind::series:
      k::linear_backward_cpu(static_cast<T*>(nullptr), G_.in_w, G_.in_b, d_emb_, values_.data(),
                             P_.in_w, N, W, C);
      break;
  }
}

// --- trunk -----------------------------------------------------------------------------------

template <typename T>
void Gpt<T>::block_forward(int l, int batch) {
  const int N = batch * cfg_.positions(), C = cfg_.d_model;
  const size_t NC = static_cast<size_t>(N) * C;
  const LayerActs& a = layer_acts_[l];
  const LayerParams& p = P_.blocks[l];
  const T* x = block_input(l);
  // x + attn(ln1(x))
  k::layernorm_forward_cpu(a.ln1, a.ln1_mean, a.ln1_rstd, x, p.ln1_w, p.ln1_b, N, C);
  k::linear_forward_cpu(a.qkv, a.ln1, p.qkv_w, p.qkv_b, N, C, 3 * C);
  if (fused_) {
    k::flash_attention_forward_cpu(a.atty, a.att, a.qkv, batch, cfg_.positions(), C, cfg_.n_head,
                                   mask());
  } else {
    k::attention_forward_cpu(a.atty, a.att, a.qkv, batch, cfg_.positions(), C, cfg_.n_head, mask());
  }
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
  const int N = batch * cfg_.positions(), C = cfg_.d_model;
  const size_t NC = static_cast<size_t>(N) * C;
  const LayerActs& a = layer_acts_[l];
  const LayerParams& p = P_.blocks[l];
  const LayerParams& g = G_.blocks[l];
  const T* x = block_input(l);
  // MLP branch: d fcproj = dres. Buffers that hold nothing yet are written, not zeroed and
  // added into ([Gradient write]).
  const auto write = k::GradInput::write;
  k::linear_backward_cpu(d_fch_gelu_, g.fcproj_w, g.fcproj_b, dres, a.fch_gelu, p.fcproj_w, N,
                         4 * C, C, write);
  k::gelu_backward_cpu(d_fch_, a.fch, d_fch_gelu_, 4 * NC, write);
  k::linear_backward_cpu(d_ln_, g.fc_w, g.fc_b, d_fch_, a.ln2, p.fc_w, N, C, 4 * C, write);
  k::layernorm_backward_cpu(dres, g.ln2_w, g.ln2_b, d_ln_, a.res2, p.ln2_w, a.ln2_mean, a.ln2_rstd,
                            N, C);
  // Attention branch: d attproj = dres (now d loss / d res2).
  k::linear_backward_cpu(d_atty_, g.proj_w, g.proj_b, dres, a.atty, p.proj_w, N, C, C, write);
  std::fill(d_qkv_, d_qkv_ + 3 * NC, T(0));
  if (fused_) {
    k::flash_attention_backward_cpu(d_qkv_, d_atty_, a.qkv, a.atty, a.att, batch, cfg_.positions(),
                                    C, cfg_.n_head, mask());
  } else {
    k::attention_backward_cpu(d_qkv_, att_scratch_, d_atty_, a.qkv, a.att, batch, cfg_.positions(),
                              C, cfg_.n_head, mask());
  }
  k::linear_backward_cpu(d_ln_, g.qkv_w, g.qkv_b, d_qkv_, a.ln1, p.qkv_w, N, C, 3 * C, write);
  k::layernorm_backward_cpu(dres, g.ln1_w, g.ln1_b, d_ln_, x, p.ln1_w, a.ln1_mean, a.ln1_rstd, N,
                            C);
}

// --- head: final LayerNorm, tied projection, softmax cross-entropy ---------------------------

template <typename T>
double Gpt<T>::mean_loss(int n) const {
  double sum = 0.0;  // in order, in double: the same sum on every rank and thread count
  for (int i = 0; i < n; ++i)
    sum += static_cast<double>(losses_[i]);
  return sum / n;
}

template <typename T>
double Gpt<T>::head_forward(int batch) {
  const int N = batch * cfg_.seq_len, C = cfg_.d_model, V = cfg_.vocab_size,
            Vp = cfg_.padded_vocab();
  const T* x = block_input(cfg_.n_layer);
  k::layernorm_forward_cpu(lnf_, lnf_mean_, lnf_rstd_, x, P_.lnf_w, P_.lnf_b, N, C);
  // Tied output projection: logits = lnf . wte^T, rows Vp apart.
  k::linear_forward_cpu(logits_, lnf_, P_.wte, static_cast<T*>(nullptr), N, C, V, Vp);
  k::softmax_cross_entropy_forward_cpu(losses_, probs_, logits_, targets_.data(), N, V, Vp);
  return mean_loss(N);
}

template <typename T>
void Gpt<T>::head_backward(double loss_scale, T* dres, int batch) {
  const int N = batch * cfg_.seq_len, C = cfg_.d_model, V = cfg_.vocab_size,
            Vp = cfg_.padded_vocab();
  std::fill(d_losses_, d_losses_ + N, static_cast<T>(loss_scale / N));
  std::fill(d_logits_, d_logits_ + static_cast<size_t>(N) * Vp, T(0));
  k::softmax_cross_entropy_backward_cpu(d_logits_, d_losses_, probs_, targets_.data(), N, V, Vp);
  k::linear_backward_cpu(d_ln_, G_.wte, static_cast<T*>(nullptr), d_logits_, lnf_, P_.wte, N, C, V,
                         k::GradInput::write, Vp);
  k::layernorm_backward_cpu(dres, G_.lnf_w, G_.lnf_b, d_ln_, block_input(cfg_.n_layer), P_.lnf_w,
                            lnf_mean_, lnf_rstd_, N, C);
}

// --- pooled head: final LayerNorm, pooling, linear, cross-entropy or squared error ------------

template <typename T>
double Gpt<T>::pooled_head_forward(int batch) {
  const int Tn = cfg_.positions(), C = cfg_.d_model, K = cfg_.num_outputs;
  const int N = batch * Tn;
  const T* x = block_input(cfg_.n_layer);
  k::layernorm_forward_cpu(lnf_, lnf_mean_, lnf_rstd_, x, P_.lnf_w, P_.lnf_b, N, C);
  if (cfg_.pool == Pool::cls) {
    k::cls_pool_forward_cpu(pooled_, lnf_, batch, Tn, C);
  } else {
    k::mean_pool_forward_cpu(pooled_, lnf_, lengths(), batch, Tn, C);
  }
  k::linear_forward_cpu(logits_, pooled_, P_.head_w, P_.head_b, batch, C, K);
  if (cfg_.task == Task::classify) {
    k::softmax_cross_entropy_forward_cpu(losses_, probs_, logits_, targets_.data(), batch, K, K);
  } else {
    k::mse_forward_cpu(losses_, logits_, reg_targets_.data(), batch, K);
  }
  return mean_loss(batch);
}

template <typename T>
void Gpt<T>::pooled_head_backward(double loss_scale, T* dres, int batch) {
  const int Tn = cfg_.positions(), C = cfg_.d_model, K = cfg_.num_outputs;
  const int N = batch * Tn;
  const size_t BK = static_cast<size_t>(batch) * K;
  std::fill(d_logits_, d_logits_ + BK, T(0));
  if (cfg_.task == Task::classify) {
    std::fill(d_losses_, d_losses_ + batch, static_cast<T>(loss_scale / batch));
    k::softmax_cross_entropy_backward_cpu(d_logits_, d_losses_, probs_, targets_.data(), batch, K,
                                          K);
  } else {
    k::mse_backward_cpu(d_logits_, logits_, reg_targets_.data(), batch, K, loss_scale / batch);
  }
  std::fill(d_pooled_, d_pooled_ + static_cast<size_t>(batch) * C, T(0));
  k::linear_backward_cpu(d_pooled_, G_.head_w, G_.head_b, d_logits_, pooled_, P_.head_w, batch, C,
                         K);
  std::fill(d_ln_, d_ln_ + static_cast<size_t>(N) * C, T(0));
  if (cfg_.pool == Pool::cls) {
    k::cls_pool_backward_cpu(d_ln_, d_pooled_, batch, Tn, C);
  } else {
    k::mean_pool_backward_cpu(d_ln_, d_pooled_, lengths(), batch, Tn, C);
  }
  k::layernorm_backward_cpu(dres, G_.lnf_w, G_.lnf_b, d_ln_, block_input(cfg_.n_layer), P_.lnf_w,
                            lnf_mean_, lnf_rstd_, N, C);
}

template class Gpt<float>;
template class Gpt<double>;

}  // namespace dpt::trainer
