// [Decoder] on one GPU: the one-position forward pass over the kernels' CUDA entry points, the
// key/value caches in device memory ([Attention decode]); the logits come back to the host each
// step (the sampler runs there).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <type_traits>
#include <utility>

#include "common/errors.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_device.h"
#include "kernels/device_buffer.h"
#include "kernels/encoder.h"
#include "kernels/gelu.h"
#include "kernels/gemm.h"
#include "kernels/layernorm.h"
#include "kernels/linear.h"
#include "kernels/residual.h"
#include "trainer/decoder.h"

namespace dpt::trainer {

namespace k = dpt::kernels;

namespace {

template <typename T>
class CudaDecoder final : public TokenDecoder {
 public:
  CudaDecoder(const ModelConfig& cfg, std::span<const float> params, int gpu)
      : cfg_(cfg), layout_(cfg), gpu_(set_device(gpu)) {
    cfg_.validate();
    if (cfg_.task != Task::lm)
      throw UsageError(
          std::string("generation needs a language model; this checkpoint's task is ") +
          task_name(cfg_.task));
    DPT_CHECK(params.size() == layout_.total(), "parameter count differs from the model");
    const size_t n = layout_.total(), C = cfg.d_model, T_ = cfg.seq_len, V = cfg.vocab_size;
    master_ = k::DeviceBuffer<float>(n);
    DPT_CHECK_CUDA(cudaMemcpyAsync(master_.get(), params.data(), n * sizeof(float),
                                   cudaMemcpyHostToDevice, stream_.get()));
    if constexpr (!std::is_same_v<T, float>) {
      copy_ = k::DeviceBuffer<T>(n);
      k::convert_params_cuda(copy_.get(), master_.get(), n, stream_.get());
    }
    tensors_ = model_tensors<const T>(layout_, cfg_, weights());
    for (const BlockTensors<const T>& w : tensors_.blocks)
      layers_.push_back(Layer{w, k::DeviceBuffer<T>(T_ * C), k::DeviceBuffer<T>(T_ * C)});
    // x, x2, ln, qkv (3C), atty, proj, fch (4C), fch_gelu (4C): 16 C; then logits (V).
    acts_ = k::DeviceBuffer<T>(C * 16 + V);
    T* a = acts_.get();
    x_ = a, x2_ = a + C, ln_ = a + 2 * C, qkv_ = a + 3 * C, atty_ = a + 6 * C, proj_ = a + 7 * C;
    fch_ = a + 8 * C, fch_gelu_ = a + 12 * C, logits_ = a + 16 * C;
    stats_ = k::DeviceBuffer<float>(2);
    token_ = k::DeviceBuffer<int32_t>(1);
    staged_token_ = k::PinnedBuffer<int32_t>(1);
    host_logits_raw_ = k::PinnedBuffer<T>(V);
    host_logits_.resize(V);
    DPT_CHECK_CUDA(cudaStreamSynchronize(stream_.get()));
  }

  int position() const override { return pos_; }
  int capacity() const override { return cfg_.seq_len; }
  void reset() override { pos_ = 0; }
  std::string describe() const override {
    return "cuda:" + std::to_string(gpu_) + (std::is_same_v<T, float> ? " fp32" : " bf16") + " (" +
           k::cuda_device_name(gpu_) + ")";
  }

  std::span<const float> step(int32_t token) override {
    const int C = cfg_.d_model, V = cfg_.vocab_size;
    check_decode_step(cfg_, pos_, token);
    cudaStream_t s = stream_.get();
    // The previous step's copies finished (it synchronized), so the pinned slot is free.
    staged_token_.get()[0] = token;
    DPT_CHECK_CUDA(cudaMemcpyAsync(token_.get(), staged_token_.get(), sizeof(int32_t),
                                   cudaMemcpyHostToDevice, s));
    k::encoder_forward_cuda(x_, token_.get(), tensors_.wte,
                            tensors_.wpe + static_cast<size_t>(pos_) * C, 1, 1, C, s);
    float* mean = stats_.get();
    float* rstd = stats_.get() + 1;
    for (Layer& L : layers_) {
      T* kc = L.k.get() + static_cast<size_t>(pos_) * C;
      T* vc = L.v.get() + static_cast<size_t>(pos_) * C;
      k::layernorm_forward_cuda(ln_, mean, rstd, x_, L.w.ln1_w, L.w.ln1_b, 1, C, s);
      k::linear_forward_cuda<T>(qkv_, ln_, L.w.qkv_w, L.w.qkv_b, 1, C, 3 * C, gemm_, s);
      DPT_CHECK_CUDA(cudaMemcpyAsync(kc, qkv_ + C, C * sizeof(T), cudaMemcpyDeviceToDevice, s));
      DPT_CHECK_CUDA(cudaMemcpyAsync(vc, qkv_ + 2 * C, C * sizeof(T), cudaMemcpyDeviceToDevice, s));
      k::attention_decode_cuda<T>(atty_, nullptr, qkv_, L.k.get(), L.v.get(), pos_ + 1, C,
                                  cfg_.n_head, s);
      k::linear_forward_cuda<T>(proj_, atty_, L.w.proj_w, L.w.proj_b, 1, C, C, gemm_, s);
      k::residual_forward_cuda(x2_, x_, proj_, static_cast<size_t>(C), s);
      std::swap(x_, x2_);
      k::layernorm_forward_cuda(ln_, mean, rstd, x_, L.w.ln2_w, L.w.ln2_b, 1, C, s);
      k::linear_forward_cuda<T>(fch_, ln_, L.w.fc_w, L.w.fc_b, 1, C, 4 * C, gemm_, s);
      k::gelu_forward_cuda(fch_gelu_, fch_, static_cast<size_t>(4 * C), s);
      k::linear_forward_cuda<T>(proj_, fch_gelu_, L.w.fcproj_w, L.w.fcproj_b, 1, 4 * C, C, gemm_,
                                s);
      k::residual_forward_cuda(x2_, x_, proj_, static_cast<size_t>(C), s);
      std::swap(x_, x2_);
    }
    k::layernorm_forward_cuda(ln_, mean, rstd, x_, tensors_.lnf_w, tensors_.lnf_b, 1, C, s);
    k::linear_forward_cuda<T>(logits_, ln_, tensors_.wte, nullptr, 1, C, V, gemm_, s);
    DPT_CHECK_CUDA(
        cudaMemcpyAsync(host_logits_raw_.get(), logits_, V * sizeof(T), cudaMemcpyDeviceToHost, s));
    DPT_CHECK_CUDA(cudaStreamSynchronize(s));
    for (int v = 0; v < V; ++v)
      host_logits_[v] = static_cast<float>(host_logits_raw_.get()[v]);
    ++pos_;
    return host_logits_;
  }

 private:
  static int set_device(int gpu) {  // before the stream and buffers are made on it
    DPT_CHECK_CUDA(cudaSetDevice(gpu));
    return gpu;
  }
  struct Layer {
    BlockTensors<const T> w;
    k::DeviceBuffer<T> k, v;  // [seq_len, C] caches
  };
  T* weights() {
    if constexpr (std::is_same_v<T, float>)
      return master_.get();
    else
      return copy_.get();
  }

  ModelConfig cfg_;
  ParamLayout layout_;
  int gpu_;
  k::CudaStreamHandle stream_;
  k::GemmCuda gemm_;
  k::DeviceBuffer<float> master_;
  k::DeviceBuffer<T> copy_;  // bf16 weights (empty for fp32)
  ModelTensors<const T> tensors_;
  std::vector<Layer> layers_;
  k::DeviceBuffer<T> acts_;
  T *x_, *x2_, *ln_, *qkv_, *atty_, *proj_, *fch_, *fch_gelu_, *logits_;
  k::DeviceBuffer<float> stats_;
  k::DeviceBuffer<int32_t> token_;
  k::PinnedBuffer<int32_t> staged_token_;
  k::PinnedBuffer<T> host_logits_raw_;
  std::vector<float> host_logits_;
  int pos_ = 0;
};

}  // namespace

std::unique_ptr<TokenDecoder> make_cuda_decoder(const ModelConfig& cfg,
                                                std::span<const float> params, int gpu,
                                                Precision precision) {
  if (precision == Precision::bf16)
    return std::make_unique<CudaDecoder<__nv_bfloat16>>(cfg, params, gpu);
  return std::make_unique<CudaDecoder<float>>(cfg, params, gpu);
}

}  // namespace dpt::trainer
