// gpu: the whole model on the GPU (GptCuda) against the CPU model (Gpt<double>) on the same
// parameters and tokens: the loss and every tensor's gradient, in fp32 and bf16; and two runs
// of the GPU model give the same bits. Skipped (77) without a visible GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cmath>
#include <vector>

#include "common/rng.h"
#include "kernels/cuda_check.h"
#include "kernels/device_buffer.h"
#include "trainer/gpt.h"
#include "trainer/gpt_cuda.h"

namespace dpt::trainer {
namespace {

namespace k = dpt::kernels;

// Odd sizes everywhere: head size 8, vocabulary 67, sequence 11, batch 3.
ModelConfig small() {
  ModelConfig c;
  c.vocab_size = 67;
  c.seq_len = 11;
  c.d_model = 24;
  c.n_layer = 2;
  c.n_head = 3;
  return c;
}

struct Reference {
  double loss;
  std::vector<double> grads;
};

struct Case {
  ModelConfig cfg = small();
  int B = 3;
  std::vector<float> params;
  std::vector<int32_t> inputs, targets;
  double loss_scale = 0.5;

  Case() {
    const ParamLayout layout(cfg);
    params.resize(layout.total());
    init_gpt_params<float>(layout, cfg.n_layer, 11, params);
    // Away from LayerNorm's 1/0 and the zero biases, so that every gradient is generic.
    for (size_t i = 0; i < params.size(); ++i)
      params[i] += static_cast<float>(0.05 * random_normal(12, 3, i));
    inputs.resize(static_cast<size_t>(B) * cfg.seq_len);
    targets.resize(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      inputs[i] = static_cast<int32_t>(random_u64(13, 1, i) % cfg.vocab_size);
      targets[i] = static_cast<int32_t>(random_u64(13, 2, i) % cfg.vocab_size);
    }
  }

  Reference cpu() const {
    Gpt<double> m(cfg, B);
    std::copy(params.begin(), params.end(), m.params().begin());
    m.zero_grads();
    Reference r;
    r.loss = m.forward(inputs.data(), targets.data(), B);
    m.backward(loss_scale);
    r.grads.assign(m.grads().begin(), m.grads().end());
    return r;
  }

  template <typename T>
  Reference gpu() const {
    k::CudaStreamHandle stream;
    GptCuda<T> m(cfg, B, stream.get());
    DPT_CHECK_CUDA(cudaMemcpy(m.params(), params.data(), params.size() * sizeof(float),
                              cudaMemcpyHostToDevice));
    m.refresh_compute_params();
    k::DeviceBuffer<float> loss_sum(1);
    DPT_CHECK_CUDA(cudaMemsetAsync(loss_sum.get(), 0, sizeof(float), stream.get()));
    m.forward(inputs.data(), targets.data(), B, loss_sum.get());
    m.backward(loss_scale);
    DPT_CHECK_CUDA(cudaStreamSynchronize(stream.get()));
    float sum = 0;
    DPT_CHECK_CUDA(cudaMemcpy(&sum, loss_sum.get(), sizeof(float), cudaMemcpyDeviceToHost));
    std::vector<float> g(m.num_params());
    DPT_CHECK_CUDA(
        cudaMemcpy(g.data(), m.grads(), g.size() * sizeof(float), cudaMemcpyDeviceToHost));
    return {sum / (static_cast<double>(B) * cfg.seq_len), std::vector<double>(g.begin(), g.end())};
  }
};

// Per tensor: ||got - want|| / ||want|| <= tol, and nothing non-finite.
void expect_grads_close(const ParamLayout& layout, const std::vector<double>& got,
                        const std::vector<double>& want, double tol) {
  for (const TensorView& t : layout.tensors()) {
    double num = 0, den = 0;
    for (size_t i = t.offset; i < t.offset + t.numel(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << t.name << " element " << i - t.offset;
      num += (got[i] - want[i]) * (got[i] - want[i]);
      den += want[i] * want[i];
    }
    EXPECT_LE(std::sqrt(num), tol * std::sqrt(den) + 1e-30) << t.name;
  }
}

TEST(GptCuda, Fp32LossAndGradientsMatchCpuModel) {
  const Case c;
  const Reference want = c.cpu();
  const Reference got = c.gpu<float>();
  EXPECT_NEAR(got.loss, want.loss, 1e-5 * want.loss);
  // fp32 sums over at most a few hundred terms per element, compared with double.
  expect_grads_close(ParamLayout(c.cfg), got.grads, want.grads, 1e-4);
}

TEST(GptCuda, Bf16LossAndGradientsTrackCpuModel) {
  const Case c;
  const Reference want = c.cpu();
  const Reference got = c.gpu<__nv_bfloat16>();
  // bf16 keeps 8 bits of mantissa: activations and matrix operands round at about 4e-3.
  EXPECT_NEAR(got.loss, want.loss, 1e-2 * want.loss);
  expect_grads_close(ParamLayout(c.cfg), got.grads, want.grads, 6e-2);
}

TEST(GptCuda, TwoRunsGiveTheSameBits) {
  const Case c;
  for (int dtype = 0; dtype < 2; ++dtype) {
    const Reference a = dtype ? c.gpu<__nv_bfloat16>() : c.gpu<float>();
    const Reference b = dtype ? c.gpu<__nv_bfloat16>() : c.gpu<float>();
    EXPECT_EQ(a.loss, b.loss) << "dtype " << dtype;
    ASSERT_EQ(a.grads.size(), b.grads.size());
    size_t differ = 0;
    for (size_t i = 0; i < a.grads.size(); ++i)
      differ += a.grads[i] != b.grads[i];
    EXPECT_EQ(differ, 0u) << "dtype " << dtype << ": gradient elements that differ";
  }
}

}  // namespace
}  // namespace dpt::trainer
