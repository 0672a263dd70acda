// Forward and backward of the GPT-style decoder on one GPU, mirroring gpt.cpp operation by
// operation so that the two can be compared (tests/trainer/gpt_cuda_test.cpp).
#include "trainer/gpt_cuda.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "common/errors.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/cuda_check.h"
#include "kernels/gelu.h"
#include "kernels/layernorm.h"
#include "kernels/linear.h"
#include "kernels/residual.h"

namespace dpt::trainer {

namespace k = dpt::kernels;

namespace {
// Hands out consecutive slices of one buffer: a first pass counts, a second hands out pointers.
template <typename P>
struct Carver {
  P* base = nullptr;
  size_t used = 0;
  P* take(size_t n) {
    P* p = base ? base + used : nullptr;
    used += n;
    return p;
  }
};
}  // namespace

template <typename T>
GptCuda<T>::GptCuda(const ModelConfig& cfg, int max_batch, cudaStream_t stream)
    : cfg_(cfg), layout_(cfg), max_batch_(max_batch), stream_(stream) {
  cfg_.validate();
  DPT_CHECK(max_batch > 0, "max_batch must be positive");
  const size_t B = max_batch, Tn = cfg.seq_len, C = cfg.d_model, V = cfg.vocab_size,
               NH = cfg.n_head, BT = B * Tn;
  bt_max_ = BT;
  params_ = k::DeviceBuffer<float>(layout_.total());
  grads_ = k::DeviceBuffer<float>(layout_.total());
  if constexpr (!std::is_same_v<T, float>) params_copy_ = k::DeviceBuffer<T>(layout_.total());
  P_ = views<T>(compute_params());
  G_ = views<float>(grads_.get());

  layer_acts_.resize(cfg.n_layer);
  for (int pass = 0; pass < 2; ++pass) {
    Carver<T> a{acts_.get()};
    Carver<float> f{stats_.get()};
    encoded_ = a.take(BT * C);
    for (auto& la : layer_acts_) {
      la.ln1 = a.take(BT * C);
      la.ln1_mean = f.take(BT);
      la.ln1_rstd = f.take(BT);
      la.qkv = a.take(BT * 3 * C);
      la.att = a.take(B * NH * Tn * Tn);
      la.atty = a.take(BT * C);
      la.attproj = a.take(BT * C);
      la.res2 = a.take(BT * C);
      la.ln2 = a.take(BT * C);
      la.ln2_mean = f.take(BT);
      la.ln2_rstd = f.take(BT);
      la.fch = a.take(BT * 4 * C);
      la.fch_gelu = a.take(BT * 4 * C);
      la.fcproj = a.take(BT * C);
      la.res3 = a.take(BT * C);
    }
    lnf_ = a.take(BT * C);
    lnf_mean_ = f.take(BT);
    lnf_rstd_ = f.take(BT);
    logits_ = a.take(BT * V);  // the backward pass overwrites it with dlogits
    losses_ = f.take(BT);
    lse_ = f.take(BT);

    Carver<T> d{dacts_.get()};
    d_res_ = d.take(BT * C);
    d_ln_ = d.take(BT * C);
    d_qkv_ = d.take(BT * 3 * C);
    d_atty_ = d.take(BT * C);
    d_fch_gelu_ = d.take(BT * 4 * C);
    d_fch_ = d.take(BT * 4 * C);
    if (pass == 0) {
      acts_ = k::DeviceBuffer<T>(a.used);
      stats_ = k::DeviceBuffer<float>(f.used);
      dacts_ = k::DeviceBuffer<T>(d.used);
    }
  }
  att_scratch_ = k::DeviceBuffer<T>(k::attention_cuda_scratch_elems(B, Tn, C, NH));
  const int N = static_cast<int>(BT);
  scratch_ = k::DeviceBuffer<float>(std::max({k::layernorm_backward_scratch_floats(N, C),
                                              k::linear_backward_scratch_floats(N, 4 * C),
                                              k::linear_backward_scratch_floats(N, 3 * C)}));
  tokens_ = k::DeviceBuffer<int32_t>(5 * BT + 1);
  for (auto& s : staging_)
    s = k::PinnedBuffer<int32_t>(5 * BT + 1);
  buckets_.order.reserve(BT);
  buckets_.bucket_start.reserve(BT + 1);
  buckets_.bucket_token.reserve(BT);
  DPT_CHECK_CUDA(cudaMemsetAsync(grads_.get(), 0, grads_.bytes(), stream_));
}

template <typename T>
T* GptCuda<T>::compute_params() {
  if constexpr (std::is_same_v<T, float>)
    return params_.get();
  else
    return params_copy_.get();
}

template <typename T>
void GptCuda<T>::refresh_compute_params() {
  if constexpr (!std::is_same_v<T, float>)
    k::convert_params_cuda(params_copy_.get(), params_.get(), layout_.total(), stream_);
}

template <typename T>
template <typename P>
typename GptCuda<T>::template ModelViews<P> GptCuda<T>::views(P* base) const {
  auto at = [&](const std::string& n) { return base + layout_.get(n).offset; };
  ModelViews<P> v{at("wte.weight"), at("wpe.weight"), at("ln_f.weight"), at("ln_f.bias"), {}};
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
const T* GptCuda<T>::block_input(int l) const {
  return l == 0 ? encoded_ : layer_acts_[l - 1].res3;
}

template <typename T>
void GptCuda<T>::zero(T* p, size_t n) {
  DPT_CHECK_CUDA(cudaMemsetAsync(p, 0, n * sizeof(T), stream_));  // all-zero bits: 0 in bf16 too
}

template <typename T>
void GptCuda<T>::upload_batch(const int32_t* inputs, const int32_t* targets, int batch) {
  const size_t n = static_cast<size_t>(batch) * cfg_.seq_len;
  // Throws for a token outside the vocabulary before anything reaches the device.
  k::encoder_buckets(&buckets_, inputs, static_cast<int>(n), cfg_.vocab_size);
  for (size_t i = 0; i < n; ++i)
    DPT_CHECK(targets[i] >= 0 && targets[i] < cfg_.vocab_size,
              "target token " + std::to_string(targets[i]) + " outside the vocabulary");
  n_buckets_ = static_cast<int>(buckets_.bucket_token.size());
  // The slot's previous copy must have left the pinned buffer before it is overwritten.
  if (slot_used_[slot_]) DPT_CHECK_CUDA(cudaEventSynchronize(staged_[slot_].get()));
  int32_t* h = staging_[slot_].get();
  const size_t BT = bt_max_;
  std::memcpy(h, inputs, n * sizeof(int32_t));
  std::memcpy(h + BT, targets, n * sizeof(int32_t));
  std::memcpy(h + 2 * BT, buckets_.order.data(), n * sizeof(int32_t));
  std::memcpy(h + 3 * BT, buckets_.bucket_token.data(), n_buckets_ * sizeof(int32_t));
  std::memcpy(h + 4 * BT, buckets_.bucket_start.data(), (n_buckets_ + 1) * sizeof(int32_t));
  DPT_CHECK_CUDA(
      cudaMemcpyAsync(tokens_.get(), h, staging_[slot_].bytes(), cudaMemcpyHostToDevice, stream_));
  DPT_CHECK_CUDA(cudaEventRecord(staged_[slot_].get(), stream_));
  slot_used_[slot_] = true;
  slot_ ^= 1;
}

template <typename T>
void GptCuda<T>::forward(const int32_t* inputs, const int32_t* targets, int batch,
                         float* loss_sum) {
  DPT_CHECK(batch > 0 && batch <= max_batch_, "micro-batch " + std::to_string(batch) +
                                                  " outside [1, " + std::to_string(max_batch_) +
                                                  "] that the model was allocated for");
  upload_batch(inputs, targets, batch);
  last_batch_ = batch;
  const int N = batch * cfg_.seq_len, C = cfg_.d_model, V = cfg_.vocab_size;
  const int32_t* d_inputs = tokens_.get();
  const int32_t* d_targets = tokens_.get() + bt_max_;
  k::encoder_forward_cuda(encoded_, d_inputs, P_.wte, P_.wpe, batch, cfg_.seq_len, C, stream_);
  for (int l = 0; l < cfg_.n_layer; ++l)
    block_forward(l, batch);
  // Head: final LayerNorm, tied projection (logits = lnf . wte^T), cross-entropy.
  k::layernorm_forward_cuda(lnf_, lnf_mean_, lnf_rstd_, block_input(cfg_.n_layer), P_.lnf_w,
                            P_.lnf_b, N, C, stream_);
  k::linear_forward_cuda<T>(logits_, lnf_, P_.wte, nullptr, N, C, V, gemm_, stream_);
  k::softmax_cross_entropy_forward_cuda(losses_, lse_, logits_, d_targets, N, V, stream_);
  k::loss_sum_accumulate_cuda(loss_sum, losses_, N, stream_);
}

template <typename T>
void GptCuda<T>::block_forward(int l, int batch) {
  const int N = batch * cfg_.seq_len, C = cfg_.d_model;
  const size_t NC = static_cast<size_t>(N) * C;
  const LayerActs& a = layer_acts_[l];
  const LayerParams<T>& p = P_.layers[l];
  const T* x = block_input(l);
  k::layernorm_forward_cuda(a.ln1, a.ln1_mean, a.ln1_rstd, x, p.ln1_w, p.ln1_b, N, C, stream_);
  k::linear_forward_cuda<T>(a.qkv, a.ln1, p.qkv_w, p.qkv_b, N, C, 3 * C, gemm_, stream_);
  k::attention_forward_cuda(a.atty, a.att, a.qkv, att_scratch_.get(), batch, cfg_.seq_len, C,
                            cfg_.n_head, gemm_, stream_);
  k::linear_forward_cuda<T>(a.attproj, a.atty, p.proj_w, p.proj_b, N, C, C, gemm_, stream_);
  k::residual_forward_cuda(a.res2, x, a.attproj, NC, stream_);
  k::layernorm_forward_cuda(a.ln2, a.ln2_mean, a.ln2_rstd, a.res2, p.ln2_w, p.ln2_b, N, C, stream_);
  k::linear_forward_cuda<T>(a.fch, a.ln2, p.fc_w, p.fc_b, N, C, 4 * C, gemm_, stream_);
  k::gelu_forward_cuda(a.fch_gelu, a.fch, NC * 4, stream_);
  k::linear_forward_cuda<T>(a.fcproj, a.fch_gelu, p.fcproj_w, p.fcproj_b, N, 4 * C, C, gemm_,
                            stream_);
  k::residual_forward_cuda(a.res3, a.res2, a.fcproj, NC, stream_);
}

template <typename T>
void GptCuda<T>::backward(double loss_scale, const GradsFinal& grads_final) {
  DPT_CHECK(last_batch_ > 0, "backward() called before forward()");
  const int batch = last_batch_;
  const int N = batch * cfg_.seq_len, C = cfg_.d_model, V = cfg_.vocab_size;
  const size_t NC = static_cast<size_t>(N) * C;
  const int32_t* d_targets = tokens_.get() + bt_max_;
  float* scratch = scratch_.get();
  zero(d_res_, NC);
  // Head. The cross-entropy backward overwrites the logits with their gradient.
  k::softmax_cross_entropy_backward_cuda(logits_, logits_, lse_, d_targets,
                                         static_cast<float>(loss_scale / N), N, V, stream_);
  zero(d_ln_, NC);
  k::linear_backward_cuda<T>(d_ln_, G_.wte, nullptr, logits_, lnf_, P_.wte, scratch, N, C, V, gemm_,
                             stream_);
  k::layernorm_backward_cuda(d_res_, G_.lnf_w, G_.lnf_b, d_ln_, block_input(cfg_.n_layer), P_.lnf_w,
                             lnf_mean_, lnf_rstd_, scratch, N, C, stream_);
  auto offset = [&](const float* g) { return static_cast<size_t>(g - grads_.get()); };
  if (grads_final) grads_final(offset(G_.lnf_w));  // ln_f is the last tensor of the layout
  for (int l = cfg_.n_layer - 1; l >= 0; --l) {
    block_backward(l, d_res_, batch);
    if (grads_final) grads_final(offset(G_.layers[l].ln1_w));  // the block's first tensor
  }
  const int32_t* t = tokens_.get();
  k::encoder_backward_cuda(G_.wte, G_.wpe, d_res_, t + 2 * bt_max_, t + 4 * bt_max_,
                           t + 3 * bt_max_, n_buckets_, batch, cfg_.seq_len, C, stream_);
}

// dres holds d loss / d res3 on entry and d loss / d x on exit, as in Gpt<T>::block_backward.
template <typename T>
void GptCuda<T>::block_backward(int l, T* dres, int batch) {
  const int N = batch * cfg_.seq_len, C = cfg_.d_model;
  const size_t NC = static_cast<size_t>(N) * C;
  const LayerActs& a = layer_acts_[l];
  const LayerParams<T>& p = P_.layers[l];
  const LayerParams<float>& g = G_.layers[l];
  const T* x = block_input(l);
  float* scratch = scratch_.get();
  zero(d_fch_gelu_, 4 * NC);
  k::linear_backward_cuda<T>(d_fch_gelu_, g.fcproj_w, g.fcproj_b, dres, a.fch_gelu, p.fcproj_w,
                             scratch, N, 4 * C, C, gemm_, stream_);
  zero(d_fch_, 4 * NC);
  k::gelu_backward_cuda(d_fch_, a.fch, d_fch_gelu_, 4 * NC, stream_);
  zero(d_ln_, NC);
  k::linear_backward_cuda<T>(d_ln_, g.fc_w, g.fc_b, d_fch_, a.ln2, p.fc_w, scratch, N, C, 4 * C,
                             gemm_, stream_);
  k::layernorm_backward_cuda(dres, g.ln2_w, g.ln2_b, d_ln_, a.res2, p.ln2_w, a.ln2_mean, a.ln2_rstd,
                             scratch, N, C, stream_);
  zero(d_atty_, NC);
  k::linear_backward_cuda<T>(d_atty_, g.proj_w, g.proj_b, dres, a.atty, p.proj_w, scratch, N, C, C,
                             gemm_, stream_);
  zero(d_qkv_, 3 * NC);
  k::attention_backward_cuda(d_qkv_, att_scratch_.get(), d_atty_, a.qkv, a.att, batch, cfg_.seq_len,
                             C, cfg_.n_head, gemm_, stream_);
  zero(d_ln_, NC);
  k::linear_backward_cuda<T>(d_ln_, g.qkv_w, g.qkv_b, d_qkv_, a.ln1, p.qkv_w, scratch, N, C, 3 * C,
                             gemm_, stream_);
  k::layernorm_backward_cuda(dres, g.ln1_w, g.ln1_b, d_ln_, x, p.ln1_w, a.ln1_mean, a.ln1_rstd,
                             scratch, N, C, stream_);
}

template class GptCuda<float>;
template class GptCuda<__nv_bfloat16>;

}  // namespace dpt::trainer
