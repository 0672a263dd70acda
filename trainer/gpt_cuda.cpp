// Forward and backward of the [Model family] on one GPU, mirroring gpt.cpp operation by
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
#include "kernels/flash_attention.h"
#include "kernels/layernorm.h"
#include "kernels/linear.h"
#include "kernels/mse.h"
#include "kernels/patches.h"
#include "kernels/pooling.h"
#include "kernels/positions.h"

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
  fused_ = cfg_.fused_attention(true);  // [Attention choice]; throws for a head size it lacks
  const bool lm = cfg.task == Task::lm;
  const size_t B = max_batch, Tn = cfg.positions(), C = cfg.d_model, NH = cfg.n_head, BT = B * Tn,
               Tin = cfg.seq_len, K = cfg.num_outputs;
  // Head outputs: padded_vocab() logits per position (lm, [Padded vocabulary]), K per sample.
  const size_t outs = lm ? BT * cfg.padded_vocab() : B * K;
  bt_max_ = B * Tin;
  params_ = k::DeviceBuffer<float>(layout_.total());
  grads_ = k::DeviceBuffer<float>(layout_.total());
  if constexpr (!std::is_same_v<T, float>) params_copy_ = k::DeviceBuffer<T>(layout_.total());
  P_ = model_tensors(layout_, cfg_, compute_params());
  G_ = model_tensors(layout_, cfg_, grads_.get());

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
      if (fused_) {
        la.lse = f.take(B * NH * Tn);
      } else {
        la.att = a.take(B * NH * Tn * Tn);
      }
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
    logits_ = a.take(outs);  // language modelling: the backward pass overwrites it with dlogits
    losses_ = f.take(lm ? BT : B);
    lse_ = f.take(lm ? BT : B);
    if (!lm) {
      emb_ = a.take(B * Tin * C);
      if (cfg.input == InputKind::image) patches_ = a.take(B * Tin * cfg.input_width());
      if (cfg.input != InputKind::tokens) values_ = a.take(B * cfg.input_values());
      if (cfg.input == InputKind::tokens) zero_pos_ = a.take(Tin * C);
      pooled_ = a.take(B * C);
      if (cfg.input == InputKind::tokens) d_zero_pos_ = f.take(Tin * C);
    }

    Carver<T> d{dacts_.get()};
    d_res_ = d.take(BT * C);
    d_ln_ = d.take(BT * C);
    d_qkv_ = d.take(BT * 3 * C);
    d_atty_ = d.take(BT * C);
    d_fch_ = d.take(BT * 4 * C);
    if (!lm) {
      d_emb_ = d.take(B * Tin * C);
      d_pooled_ = d.take(B * C);
      d_logits_ = d.take(outs);
    }
    if (pass == 0) {
      acts_ = k::DeviceBuffer<T>(a.used);
      stats_ = k::DeviceBuffer<float>(f.used);
      dacts_ = k::DeviceBuffer<T>(d.used);
    }
  }
  const int N = static_cast<int>(BT);
  // One float scratch serves every backward step in turn (one stream orders them); fused
  // attention's dQ and row dots take their turn in it too.
  size_t scratch_floats = std::max(
      {k::layernorm_backward_scratch_floats(N, C), k::linear_backward_scratch_floats(N, 4 * C),
       k::linear_backward_scratch_floats(N, 3 * C), k::linear_backward_scratch_floats(N, C)});
  if (fused_) {
    scratch_floats =
        std::max(scratch_floats, k::flash_attention_cuda_scratch_floats(max_batch, cfg.positions(),
                                                                        cfg.d_model, cfg.n_head));
  } else {
    att_scratch_ = k::DeviceBuffer<T>(k::attention_cuda_scratch_elems(B, Tn, C, NH));
  }
  scratch_ = k::DeviceBuffer<float>(scratch_floats);
  const size_t ints = 5 * bt_max_ + 1 + B;  // ... | bucket_start (n + 1) | lengths (B)
  tokens_ = k::DeviceBuffer<int32_t>(ints);
  for (auto& s : staging_)
    s = k::PinnedBuffer<int32_t>(ints);
  if (!lm) {
    values_max_ = cfg.input == InputKind::tokens ? 0 : B * cfg.input_values();
    targets_max_ = cfg.task == Task::regress ? B * K : 0;
    floats_ = k::DeviceBuffer<float>(std::max<size_t>(1, values_max_ + targets_max_));
    for (auto& s : float_staging_)
      s = k::PinnedBuffer<float>(std::max<size_t>(1, values_max_ + targets_max_));
    if (zero_pos_) zero(zero_pos_, Tin * C);
  }
  buckets_.order.reserve(bt_max_);
  buckets_.bucket_start.reserve(bt_max_ + 1);
  buckets_.bucket_token.reserve(bt_max_);
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
const T* GptCuda<T>::block_input(int l) const {
  return l == 0 ? encoded_ : layer_acts_[l - 1].res3;
}

template <typename T>
void GptCuda<T>::zero(T* p, size_t n) {
  DPT_CHECK_CUDA(cudaMemsetAsync(p, 0, n * sizeof(T), stream_));  // all-zero bits: 0 in bf16 too
}

template <typename T>
void GptCuda<T>::upload_batch(const datasets::Batch& in) {
  const int batch = in.rows;
  const bool lm = cfg_.task == Task::lm;
  const size_t n = cfg_.input == InputKind::tokens ? static_cast<size_t>(batch) * cfg_.seq_len : 0;
  const size_t n_labels = lm ? n : (cfg_.task == Task::classify ? batch : 0);
  auto need = [](const void* p, const char* what) {
    DPT_CHECK(p != nullptr, std::string("the batch lacks ") + what + " that the model reads");
  };
  if (n > 0) {
    need(in.tokens, "token ids");
    // Throws for a token outside the vocabulary before anything reaches the device.
    k::encoder_buckets(&buckets_, in.tokens, static_cast<int>(n), cfg_.vocab_size);
  } else {
    buckets_.order.clear();
    buckets_.bucket_token.clear();
    buckets_.bucket_start.assign(1, 0);
  }
  const int32_t limit = lm ? cfg_.vocab_size : cfg_.num_outputs;
  if (n_labels > 0) need(in.labels, "labels");
  for (size_t i = 0; i < n_labels; ++i)
    DPT_CHECK(in.labels[i] >= 0 && in.labels[i] < limit,
              std::string(lm ? "target token " : "label ") + std::to_string(in.labels[i]) +
                  " outside [0, " + std::to_string(limit) + ")");
  n_buckets_ = static_cast<int>(buckets_.bucket_token.size());
  has_lengths_ = !lm && in.lengths != nullptr;
  // The slot's previous copies must have left the pinned buffers before they are overwritten.
  if (slot_used_[slot_]) DPT_CHECK_CUDA(cudaEventSynchronize(staged_[slot_].get()));
  int32_t* h = staging_[slot_].get();
  const size_t BT = bt_max_;
  if (n > 0) std::memcpy(h, in.tokens, n * sizeof(int32_t));
  if (n_labels > 0) std::memcpy(h + BT, in.labels, n_labels * sizeof(int32_t));
  std::memcpy(h + 2 * BT, buckets_.order.data(), buckets_.order.size() * sizeof(int32_t));
  std::memcpy(h + 3 * BT, buckets_.bucket_token.data(), n_buckets_ * sizeof(int32_t));
  std::memcpy(h + 4 * BT, buckets_.bucket_start.data(), (n_buckets_ + 1) * sizeof(int32_t));
  if (has_lengths_) {
    // The trunk's valid rows: the text's length, and the class token before it.
    const int off = cfg_.has_cls() ? 1 : 0;
    for (int b = 0; b < batch; ++b) {
      DPT_CHECK(in.lengths[b] >= 1 && in.lengths[b] <= cfg_.seq_len,
                "length " + std::to_string(in.lengths[b]) + " of row " + std::to_string(b) +
                    " outside [1, " + std::to_string(cfg_.seq_len) + "]");
      h[5 * BT + 1 + b] = in.lengths[b] + off;
    }
  }
  DPT_CHECK_CUDA(
      cudaMemcpyAsync(tokens_.get(), h, staging_[slot_].bytes(), cudaMemcpyHostToDevice, stream_));
  if (!lm && values_max_ + targets_max_ > 0) {
    float* hf = float_staging_[slot_].get();
    const size_t nv = values_max_ > 0 ? static_cast<size_t>(batch) * cfg_.input_values() : 0;
    const size_t nt = targets_max_ > 0 ? static_cast<size_t>(batch) * cfg_.num_outputs : 0;
    if (nv > 0) {
      need(in.values, "input values");
      std::memcpy(hf, in.values, nv * sizeof(float));
    }
    if (nt > 0) {
      need(in.targets, "regression targets");
      std::memcpy(hf + values_max_, in.targets, nt * sizeof(float));
    }
    DPT_CHECK_CUDA(cudaMemcpyAsync(floats_.get(), hf, float_staging_[slot_].bytes(),
                                   cudaMemcpyHostToDevice, stream_));
  }
  DPT_CHECK_CUDA(cudaEventRecord(staged_[slot_].get(), stream_));
  slot_used_[slot_] = true;
  slot_ ^= 1;
}

template <typename T>
kernels::AttentionMask GptCuda<T>::mask() const {
  return {cfg_.causal(), has_lengths_ ? tokens_.get() + 5 * bt_max_ + 1 : nullptr};
}

template <typename T>
void GptCuda<T>::forward(const datasets::Batch& in, float* loss_sum) {
  const int batch = in.rows;
  DPT_CHECK(batch > 0 && batch <= max_batch_, "micro-batch " + std::to_string(batch) +
                                                  " outside [1, " + std::to_string(max_batch_) +
                                                  "] that the model was allocated for");
  upload_batch(in);
  last_batch_ = batch;
  embed_forward(batch);
  for (int l = 0; l < cfg_.n_layer; ++l)
    block_forward(l, batch);
  if (cfg_.task != Task::lm) {
    pooled_head_forward(batch, loss_sum);
    return;
  }
  // Head: final LayerNorm, tied projection (logits = lnf . wte^T), cross-entropy.
  const int N = batch * cfg_.seq_len, C = cfg_.d_model, V = cfg_.vocab_size,
            Vp = cfg_.padded_vocab();
  const int32_t* d_targets = tokens_.get() + bt_max_;
  // lnf_ came with the last block's residual ([Residual LayerNorm], block_forward).
  k::linear_forward_cuda<T>(logits_, lnf_, P_.wte, nullptr, N, C, V, gemm_, stream_, Vp);
  k::softmax_cross_entropy_forward_cuda(losses_, lse_, logits_, d_targets, N, V, Vp, stream_);
  k::loss_sum_accumulate_cuda(loss_sum, losses_, N, stream_);
}

template <typename T>
void GptCuda<T>::embed_forward(int batch) {
  const int Tin = cfg_.seq_len, C = cfg_.d_model;
  const int32_t* d_inputs = tokens_.get();
  if (cfg_.task == Task::lm) {
    k::encoder_forward_cuda(encoded_, d_inputs, P_.wte, P_.wpe, batch, Tin, C, stream_);
    return;
  }
  const int N = batch * Tin, W = cfg_.input_width();
  if (cfg_.input != InputKind::tokens) {
    // The inputs in the compute type (a copy for bf16; the same values for float).
    const size_t nv = static_cast<size_t>(batch) * cfg_.input_values();
    if constexpr (std::is_same_v<T, float>) {
      DPT_CHECK_CUDA(cudaMemcpyAsync(values_, floats_.get(), nv * sizeof(float),
                                     cudaMemcpyDeviceToDevice, stream_));
    } else {
      k::convert_params_cuda(values_, floats_.get(), nv, stream_);
    }
  }
  switch (cfg_.input) {
    case InputKind::tokens:
      // The lookup alone (a zero position table): [Positions] adds the positions.
      k::encoder_forward_cuda(emb_, d_inputs, P_.wte, zero_pos_, batch, Tin, C, stream_);
      break;
    case InputKind::image:
      k::patches_forward_cuda(patches_, values_, batch, cfg_.image_h, cfg_.image_w, cfg_.channels,
                              cfg_.patch, stream_);
      k::linear_forward_cuda<T>(emb_, patches_, P_.in_w, P_.in_b, N, W, C, gemm_, stream_);
      break;
    case InputKind::series:
      k::linear_forward_cuda<T>(emb_, values_, P_.in_w, P_.in_b, N, W, C, gemm_, stream_);
      break;
  }
  k::positions_forward_cuda(encoded_, emb_, P_.cls, P_.wpe, batch, Tin, C, stream_);
}

template <typename T>
void GptCuda<T>::embed_backward(int batch) {
  const int Tin = cfg_.seq_len, C = cfg_.d_model;
  const int32_t* t = tokens_.get();
  if (cfg_.task == Task::lm) {
    k::encoder_backward_cuda(G_.wte, G_.wpe, d_res_, t + 2 * bt_max_, t + 4 * bt_max_,
                             t + 3 * bt_max_, n_buckets_, batch, Tin, C, stream_);
    return;
  }
  const int N = batch * Tin, W = cfg_.input_width();
  zero(d_emb_, static_cast<size_t>(N) * C);
  k::positions_backward_cuda(d_emb_, G_.cls, G_.wpe, d_res_, batch, Tin, C, stream_);
  float* scratch = scratch_.get();
  switch (cfg_.input) {
    case InputKind::tokens:
      DPT_CHECK_CUDA(cudaMemsetAsync(d_zero_pos_, 0, sizeof(float) * Tin * C, stream_));
      k::encoder_backward_cuda(G_.wte, d_zero_pos_, d_emb_, t + 2 * bt_max_, t + 4 * bt_max_,
                               t + 3 * bt_max_, n_buckets_, batch, Tin, C, stream_);
      break;
    case InputKind::image:
      k::linear_backward_cuda<T>(nullptr, G_.in_w, G_.in_b, d_emb_, patches_, P_.in_w, scratch, N,
                                 W, C, gemm_, stream_);
      break;
    case InputKind::series:
      k::linear_backward_cuda<T>(nullptr, G_.in_w, G_.in_b, d_emb_, values_, P_.in_w, scratch, N, W,
                                 C, gemm_, stream_);
      break;
  }
}

template <typename T>
void GptCuda<T>::pooled_head_forward(int batch, float* loss_sum) {
  const int Tn = cfg_.positions(), C = cfg_.d_model, K = cfg_.num_outputs;
  // lnf_ came with the last block's residual ([Residual LayerNorm], block_forward).
  if (cfg_.pool == Pool::cls) {
    k::cls_pool_forward_cuda(pooled_, lnf_, batch, Tn, C, stream_);
  } else {
    k::mean_pool_forward_cuda(pooled_, lnf_, mask().lengths, batch, Tn, C, stream_);
  }
  k::linear_forward_cuda<T>(logits_, pooled_, P_.head_w, P_.head_b, batch, C, K, gemm_, stream_);
  if (cfg_.task == Task::classify) {
    k::softmax_cross_entropy_forward_cuda(losses_, lse_, logits_, tokens_.get() + bt_max_, batch, K,
                                          K, stream_);
  } else {
    k::mse_forward_cuda(losses_, logits_, floats_.get() + values_max_, batch, K, stream_);
  }
  k::loss_sum_accumulate_cuda(loss_sum, losses_, batch, stream_);
}

template <typename T>
void GptCuda<T>::pooled_head_backward(double loss_scale, int batch) {
  const int Tn = cfg_.positions(), C = cfg_.d_model, K = cfg_.num_outputs;
  const int N = batch * Tn;
  const size_t BK = static_cast<size_t>(batch) * K;
  float* scratch = scratch_.get();
  const float dloss = static_cast<float>(loss_scale / batch);
  if (cfg_.task == Task::classify) {
    // Written, not added: d_logits_ needs no zeroing; the logits stay for outputs_to_host.
    k::softmax_cross_entropy_backward_cuda(d_logits_, logits_, lse_, tokens_.get() + bt_max_, dloss,
                                           batch, K, K, stream_);
  } else {
    zero(d_logits_, BK);
    k::mse_backward_cuda(d_logits_, logits_, floats_.get() + values_max_, batch, K, dloss, stream_);
  }
  zero(d_pooled_, static_cast<size_t>(batch) * C);
  k::linear_backward_cuda<T>(d_pooled_, G_.head_w, G_.head_b, d_logits_, pooled_, P_.head_w,
                             scratch, batch, C, K, gemm_, stream_);
  zero(d_ln_, static_cast<size_t>(N) * C);
  if (cfg_.pool == Pool::cls) {
    k::cls_pool_backward_cuda(d_ln_, d_pooled_, batch, Tn, C, stream_);
  } else {
    k::mean_pool_backward_cuda(d_ln_, d_pooled_, mask().lengths, batch, Tn, C, stream_);
  }
  k::layernorm_backward_cuda(d_res_, G_.lnf_w, G_.lnf_b, d_ln_, block_input(cfg_.n_layer), P_.lnf_w,
                             lnf_mean_, lnf_rstd_, scratch, N, C, stream_);
}

namespace {
// n values of T at device src into out (host floats), waiting for the stream.
// rows rows of width values each, ld apart at src, packed into out.
template <typename T>
void device_rows_to_host_floats(const T* src, size_t rows, size_t width, size_t ld, float* out,
                                cudaStream_t stream) {
  std::vector<T> host(rows * width);
  DPT_CHECK_CUDA(cudaMemcpy2DAsync(host.data(), width * sizeof(T), src, ld * sizeof(T),
                                   width * sizeof(T), rows, cudaMemcpyDeviceToHost, stream));
  DPT_CHECK_CUDA(cudaStreamSynchronize(stream));
  for (size_t i = 0; i < host.size(); ++i)
    out[i] = static_cast<float>(host[i]);
}
// n contiguous values of T at device src into out (host floats), waiting for the stream.
template <typename T>
void device_to_host_floats(const T* src, size_t n, float* out, cudaStream_t stream) {
  device_rows_to_host_floats(src, 1, n, n, out, stream);
}
}  // namespace

template <typename T>
void GptCuda<T>::lm_logits_to_host(float* out) {
  DPT_CHECK(cfg_.task == Task::lm && last_batch_ > 0,
            "lm_logits_to_host: no language model logits");
  device_rows_to_host_floats(logits_, static_cast<size_t>(last_batch_) * cfg_.seq_len,
                             cfg_.vocab_size, cfg_.padded_vocab(), out, stream_);
}

template <typename T>
void GptCuda<T>::attention_to_host(int l, float* out) {
  DPT_CHECK(l >= 0 && l < cfg_.n_layer && last_batch_ > 0, "attention_to_host: no such layer");
  DPT_CHECK(!fused_,
            "attention probabilities: fused attention keeps none; build the model with "
            "--attention unfused ([Attention choice])");
  const size_t P = cfg_.positions();
  device_to_host_floats(layer_acts_[l].att, static_cast<size_t>(last_batch_) * cfg_.n_head * P * P,
                        out, stream_);
}

template <typename T>
void GptCuda<T>::outputs_to_host(float* out) {
  DPT_CHECK(cfg_.task != Task::lm && last_batch_ > 0, "outputs_to_host: no head outputs");
  device_to_host_floats(logits_, static_cast<size_t>(last_batch_) * cfg_.num_outputs, out, stream_);
}

template <typename T>
void GptCuda<T>::block_forward(int l, int batch) {
  const int N = batch * cfg_.positions(), C = cfg_.d_model;
  const LayerActs& a = layer_acts_[l];
  const LayerParams<T>& p = P_.blocks[l];
  const T* x = block_input(l);
  // Every LayerNorm after the first comes with the residual add before it, in one pass
  // ([Residual LayerNorm], kernels/layernorm.h): ln2 with res2 here, the next block's ln1 (or
  // the final ln_f) with res3 at the end.
  if (l == 0)
    k::layernorm_forward_cuda(a.ln1, a.ln1_mean, a.ln1_rstd, x, p.ln1_w, p.ln1_b, N, C, stream_);
  k::linear_forward_cuda<T>(a.qkv, a.ln1, p.qkv_w, p.qkv_b, N, C, 3 * C, gemm_, stream_);
  if (fused_) {
    k::flash_attention_forward_cuda(a.atty, a.lse, a.qkv, batch, cfg_.positions(), C, cfg_.n_head,
                                    stream_, mask());
  } else {
    k::attention_forward_cuda(a.atty, a.att, a.qkv, att_scratch_.get(), batch, cfg_.positions(), C,
                              cfg_.n_head, gemm_, stream_, mask());
  }
  k::linear_forward_cuda<T>(a.attproj, a.atty, p.proj_w, p.proj_b, N, C, C, gemm_, stream_);
  k::residual_layernorm_forward_cuda(a.res2, a.ln2, a.ln2_mean, a.ln2_rstd, x, a.attproj, p.ln2_w,
                                     p.ln2_b, N, C, stream_);
  // fc with its GELU in the product's epilogue ([GELU epilogues], kernels/linear.h): fch is
  // the pre-activation the backward pass reads.
  k::linear_gelu_forward_cuda<T>(a.fch_gelu, a.fch, a.ln2, p.fc_w, p.fc_b, N, C, 4 * C, gemm_,
                                 stream_);
  k::linear_forward_cuda<T>(a.fcproj, a.fch_gelu, p.fcproj_w, p.fcproj_b, N, 4 * C, C, gemm_,
                            stream_);
  if (l + 1 < cfg_.n_layer) {
    const LayerActs& next = layer_acts_[l + 1];
    const LayerParams<T>& np = P_.blocks[l + 1];
    k::residual_layernorm_forward_cuda(a.res3, next.ln1, next.ln1_mean, next.ln1_rstd, a.res2,
                                       a.fcproj, np.ln1_w, np.ln1_b, N, C, stream_);
  } else {
    k::residual_layernorm_forward_cuda(a.res3, lnf_, lnf_mean_, lnf_rstd_, a.res2, a.fcproj,
                                       P_.lnf_w, P_.lnf_b, N, C, stream_);
  }
}

template <typename T>
void GptCuda<T>::backward(double loss_scale, const GradsFinal& grads_final) {
  DPT_CHECK(last_batch_ > 0, "backward() called before forward()");
  const int batch = last_batch_;
  const int N = batch * cfg_.positions(), C = cfg_.d_model, V = cfg_.vocab_size,
            Vp = cfg_.padded_vocab();
  const size_t NC = static_cast<size_t>(N) * C;
  const int32_t* d_targets = tokens_.get() + bt_max_;
  float* scratch = scratch_.get();
  zero(d_res_, NC);
  if (cfg_.task == Task::lm) {
    // Head. The cross-entropy backward overwrites the logits with their gradient.
    k::softmax_cross_entropy_backward_cuda(logits_, logits_, lse_, d_targets,
                                           static_cast<float>(loss_scale / N), N, V, Vp, stream_);
    k::linear_backward_cuda<T>(d_ln_, G_.wte, nullptr, logits_, lnf_, P_.wte, scratch, N, C, V,
                               gemm_, stream_, k::GradInput::write, Vp);
    k::layernorm_backward_cuda(d_res_, G_.lnf_w, G_.lnf_b, d_ln_, block_input(cfg_.n_layer),
                               P_.lnf_w, lnf_mean_, lnf_rstd_, scratch, N, C, stream_);
  } else {
    pooled_head_backward(loss_scale, batch);
  }
  auto offset = [&](const float* g) { return static_cast<size_t>(g - grads_.get()); };
  if (grads_final) grads_final(offset(G_.lnf_w));  // ln_f is the last tensor of the layout
  for (int l = cfg_.n_layer - 1; l >= 0; --l) {
    block_backward(l, d_res_, batch);
    if (grads_final) grads_final(offset(G_.blocks[l].ln1_w));  // the block's first tensor
  }
  embed_backward(batch);
}

// dres holds d loss / d res3 on entry and d loss / d x on exit, as in Gpt<T>::block_backward.
template <typename T>
void GptCuda<T>::block_backward(int l, T* dres, int batch) {
  const int N = batch * cfg_.positions(), C = cfg_.d_model;
  const size_t NC = static_cast<size_t>(N) * C;
  const LayerActs& a = layer_acts_[l];
  const LayerParams<T>& p = P_.blocks[l];
  const LayerParams<float>& g = G_.blocks[l];
  const T* x = block_input(l);
  float* scratch = scratch_.get();
  // Buffers that hold nothing yet are written (beta 0), not zeroed and added into
  // ([Gradient write]).
  const auto write = k::GradInput::write;
  // fcproj's input gradient goes through GELU's derivative in the product's epilogue straight
  // to d_fch ([GELU epilogues]).
  k::linear_dgelu_backward_cuda<T>(d_fch_, g.fcproj_w, g.fcproj_b, dres, a.fch_gelu, a.fch,
                                   p.fcproj_w, scratch, N, 4 * C, C, gemm_, stream_);
  k::linear_backward_cuda<T>(d_ln_, g.fc_w, g.fc_b, d_fch_, a.ln2, p.fc_w, scratch, N, C, 4 * C,
                             gemm_, stream_, write);
  k::layernorm_backward_cuda(dres, g.ln2_w, g.ln2_b, d_ln_, a.res2, p.ln2_w, a.ln2_mean, a.ln2_rstd,
                             scratch, N, C, stream_);
  k::linear_backward_cuda<T>(d_atty_, g.proj_w, g.proj_b, dres, a.atty, p.proj_w, scratch, N, C, C,
                             gemm_, stream_, write);
  zero(d_qkv_, 3 * NC);
  if (fused_) {
    k::flash_attention_backward_cuda(d_qkv_, scratch, d_atty_, a.qkv, a.atty, a.lse, batch,
                                     cfg_.positions(), C, cfg_.n_head, stream_, mask());
  } else {
    k::attention_backward_cuda(d_qkv_, att_scratch_.get(), d_atty_, a.qkv, a.att, batch,
                               cfg_.positions(), C, cfg_.n_head, gemm_, stream_, mask());
  }
  k::linear_backward_cuda<T>(d_ln_, g.qkv_w, g.qkv_b, d_qkv_, a.ln1, p.qkv_w, scratch, N, C, 3 * C,
                             gemm_, stream_, write);
  k::layernorm_backward_cuda(dres, g.ln1_w, g.ln1_b, d_ln_, x, p.ln1_w, a.ln1_mean, a.ln1_rstd,
                             scratch, N, C, stream_);
}

template class GptCuda<float>;
template class GptCuda<__nv_bfloat16>;

}  // namespace dpt::trainer
