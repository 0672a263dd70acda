// The maps model on one GPU: GptCuda's forward pass, its attention probabilities and outputs
// copied back to the host.
#include <cuda_bf16.h>

#include "common/errors.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_device.h"
#include "kernels/device_buffer.h"
#include "trainer/attention_maps.h"
#include "trainer/gpt_cuda.h"

namespace dpt::trainer {

namespace {

template <typename T>
class CudaMapsModel final : public MapsModel {
 public:
  CudaMapsModel(const ModelConfig& cfg, std::span<const float> params, int max_batch, int gpu)
      : gpu_(set_device(gpu)), m_(cfg, max_batch, stream_.get()), loss_sum_(1) {
    DPT_CHECK(params.size() == m_.num_params(), "parameter count differs from the model");
    kernels::copy_to_device(m_.params(), params.data(), params.size(), stream_.get());
    m_.refresh_compute_params();
  }
  void forward(const datasets::Batch& batch) override {
    DPT_CHECK_CUDA(cudaMemsetAsync(loss_sum_.get(), 0, sizeof(float), stream_.get()));
    m_.forward(batch, loss_sum_.get());
  }
  void attention(int l, float* out) override { m_.attention_to_host(l, out); }
  void outputs(float* out) override {
    if (m_.config().task == Task::lm) {
      m_.lm_logits_to_host(out);
    } else {
      m_.outputs_to_host(out);
    }
  }
  std::string describe() const override {
    return "cuda:" + std::to_string(gpu_) + (std::is_same_v<T, float> ? " fp32" : " bf16") + " (" +
           kernels::cuda_device_name(gpu_) + ")";
  }

 private:
  static int set_device(int gpu) {
    DPT_CHECK_CUDA(cudaSetDevice(gpu));
    return gpu;
  }
  int gpu_;
  kernels::CudaStreamHandle stream_;
  GptCuda<T> m_;
  kernels::DeviceBuffer<float> loss_sum_;
};

}  // namespace

std::unique_ptr<MapsModel> make_cuda_maps_model(const ModelConfig& cfg,
                                                std::span<const float> params, int max_batch,
                                                int gpu, Precision precision) {
  if (precision == Precision::bf16)
    return std::make_unique<CudaMapsModel<__nv_bfloat16>>(cfg, params, max_batch, gpu);
  return std::make_unique<CudaMapsModel<float>>(cfg, params, max_batch, gpu);
}

}  // namespace dpt::trainer
