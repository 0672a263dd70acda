// The [Model family] of gpt.h on one GPU: the same three parts (input embedding, trunk, head)
// for every task, the same parameter layout and the same order of operations, over the
// kernels' CUDA entry points. T (float or __nv_bfloat16) is the compute type of activations and of
// the parameter copy the kernels read; master parameters and gradients are fp32. Included only by
// CUDA-built sources.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "datasets/batch.h"
#include "kernels/attention.h"
#include "kernels/device_buffer.h"
#include "kernels/encoder.h"
#include "kernels/gemm.h"
#include "trainer/model_config.h"
#include "trainer/param_layout.h"

namespace dpt::trainer {

template <typename T>
class GptCuda {
 public:
  // [Allocate once] Every device and pinned buffer for micro-batches of up to max_batch
  // sequences; forward and backward allocate nothing. Work goes on `stream`.
  GptCuda(const ModelConfig& cfg, int max_batch, cudaStream_t stream);
  GptCuda(const GptCuda&) = delete;
  GptCuda& operator=(const GptCuda&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  size_t num_params() const { return layout_.total(); }
  float* params() { return params_.get(); }  // fp32 master, [Parameter layout]
  float* grads() { return grads_.get(); }
  // The parameters the kernels read: the master buffer itself for float, else a T copy.
  T* compute_params();
  // Refreshes the T copy from the master parameters (after they were set from the host).
  void refresh_compute_params();

  // Copies the batch's fields ([Batch], host) to the device and runs the forward pass; adds the
  // sum of the losses into *loss_sum (device, fp32): of the batch*seq_len positions (lm) or of
  // the batch's samples (classify, regress).
  void forward(const datasets::Batch& batch, float* loss_sum);
  // Language modelling: inputs and targets [batch, seq_len].
  void forward(const int32_t* inputs, const int32_t* targets, int batch, float* loss_sum) {
    forward(datasets::Batch{batch, inputs, nullptr, nullptr, targets, nullptr}, loss_sum);
  }
  // Losses the last forward() summed: positions (lm) or samples.
  int64_t loss_terms(int batch) const {
    return cfg_.task == Task::lm ? int64_t{batch} * cfg_.seq_len : batch;
  }
  // Classification and regression: the head's [batch, K] outputs of the last forward() into
  // out (host), waiting for the stream.
  void outputs_to_host(float* out);
  // Language modelling: the logits [batch, seq_len, V] of the last forward() into out (host),
  // waiting for the stream. Call it before backward(), which overwrites them.
  void lm_logits_to_host(float* out);
  // Layer l's attention probabilities [batch, NH, T, T] of the last forward() into out (host),
  // waiting for the stream ([Attention mask]: hidden keys exactly 0).
  // Unfused attention only ([Attention choice]).
  void attention_to_host(int l, float* out);
  bool fused_attention() const { return fused_; }
  // Every gradient at a flat offset >= frontier is final once the work enqueued so far on the
  // stream has run ([Gradient buckets]); called on the host as backward enqueues.
  using GradsFinal = std::function<void(size_t frontier)>;
  // Adds d(loss_scale * mean loss)/d(params) into grads() for the last forward(). When
  // `grads_final` is set, calls it after enqueuing the head and each block, as Gpt<T> does.
  void backward(double loss_scale, const GradsFinal& grads_final = {});

 private:
  struct LayerActs {
    // att: the probabilities [B,NH,T,T] (unfused attention); lse: the rows' log-sum-exp
    // [B,NH,T] (fused). The other is null ([Attention choice]).
    T *ln1, *qkv, *att = nullptr, *atty, *attproj, *res2, *ln2, *fch, *fch_gelu, *fcproj, *res3;
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd, *lse = nullptr;
  };
  template <typename P>
  using LayerParams = BlockTensors<P>;
  template <typename P>
  using ModelViews = ModelTensors<P>;  // [Parameter layout] views, resolved once
  const T* block_input(int l) const;
  void upload_batch(const datasets::Batch& in);
  void embed_forward(int batch);
  void embed_backward(int batch);
  void pooled_head_forward(int batch, float* loss_sum);
  void pooled_head_backward(double loss_scale, int batch);
  kernels::AttentionMask mask() const;
  void block_forward(int l, int batch);
  void block_backward(int l, T* dres, int batch);
  void zero(T* p, size_t n);

  ModelConfig cfg_;
  ParamLayout layout_;
  int max_batch_;
  bool fused_ = false;  // [Attention choice]
  cudaStream_t stream_;
  kernels::GemmCuda gemm_;

  kernels::DeviceBuffer<float> params_, grads_;
  kernels::DeviceBuffer<T> params_copy_;  // empty for T = float
  kernels::DeviceBuffer<T> acts_, dacts_, att_scratch_;
  kernels::DeviceBuffer<float> stats_, scratch_;
  ModelViews<T> P_;      // into compute_params()
  ModelViews<float> G_;  // into grads_
  std::vector<LayerActs> layer_acts_;
  T *encoded_, *lnf_, *logits_;
  float *lnf_mean_, *lnf_rstd_, *losses_, *lse_;
  T *d_res_, *d_ln_, *d_qkv_, *d_atty_, *d_fch_;
  // Classification and regression ([Model family]): embedded inputs [B, Tin, C], image patches,
  // the inputs in T, a zero position table for the token lookup, pooled rows, and gradients.
  T *emb_ = nullptr, *patches_ = nullptr, *values_ = nullptr, *zero_pos_ = nullptr;
  T *pooled_ = nullptr, *d_emb_ = nullptr, *d_pooled_ = nullptr, *d_logits_ = nullptr;
  float* d_zero_pos_ = nullptr;

  // [Embedding buckets] and the token ids: [inputs | targets | order | bucket_token |
  // bucket_start | lengths] of one micro-batch, staged in one of two pinned slots on the host
  // and copied into one device buffer on the stream; the float fields [values | regression
  // targets] likewise. A slot is reused once its last copy has run.
  size_t bt_max_;
  kernels::DeviceBuffer<int32_t> tokens_;
  kernels::PinnedBuffer<int32_t> staging_[2];
  size_t values_max_ = 0, targets_max_ = 0;
  kernels::DeviceBuffer<float> floats_;
  kernels::PinnedBuffer<float> float_staging_[2];
  bool has_lengths_ = false;
  kernels::CudaEventHandle staged_[2];
  bool slot_used_[2] = {false, false};
  int slot_ = 0;
  kernels::EmbeddingBuckets buckets_;
  int n_buckets_ = 0;
  int last_batch_ = 0;
};

}  // namespace dpt::trainer
