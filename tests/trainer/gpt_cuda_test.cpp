// gpu: the whole model on the GPU (GptCuda) against the CPU model (Gpt<double>) on the same
// parameters and tokens: the loss and every tensor's gradient, in fp32 and bf16; and two runs
// of the GPU model give the same bits; and every other member of the [Model family] (image,
// series and padded text inputs; class token and mean pooling; classification and regression
// heads) likewise, with the head's outputs. Skipped (77) without a visible GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cmath>
#include <tuple>
#include <vector>

#include "common/errors.h"
#include "common/rng.h"
#include "kernels/cuda_check.h"
#include "kernels/device_buffer.h"
#include "trainer/attention_maps.h"
#include "trainer/decoder.h"
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

// [Attention choice]: head size 32, so that fused attention runs; T = 100 spans two query
// tiles, the second partial. V = 67 pads to 128 ([Padded vocabulary]).
ModelConfig fused_shape() {
  ModelConfig c = small();
  c.seq_len = 100;
  c.d_model = 64;
  c.n_head = 2;
  c.attention = AttentionImpl::fused;
  return c;
}

struct Case {
  ModelConfig cfg = small();
  int B = 3;
  std::vector<float> params;
  std::vector<int32_t> inputs, targets;
  double loss_scale = 0.5;

  explicit Case(const ModelConfig& shape = small()) : cfg(shape) {
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
    ModelConfig reference = cfg;  // the CPU's unfused attention: the reference of every other
    reference.attention = AttentionImpl::unfused;
    Gpt<double> m(reference, B);
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
    k::copy_to_device(m.params(), params.data(), params.size(), stream.get());
    m.refresh_compute_params();
    k::DeviceBuffer<float> loss_sum(1);
    DPT_CHECK_CUDA(cudaMemsetAsync(loss_sum.get(), 0, sizeof(float), stream.get()));
    m.forward(inputs.data(), targets.data(), B, loss_sum.get());
    m.backward(loss_scale);
    DPT_CHECK_CUDA(cudaStreamSynchronize(stream.get()));
    float sum = 0;
    k::copy_to_host(&sum, loss_sum.get(), 1, stream.get());
    std::vector<float> g(m.num_params());
    k::copy_to_host(g.data(), m.grads(), g.size(), stream.get());
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

// The unfused attention's GPU model was held to the CPU's above; the fused one (the CPU
// reference is unfused) to the same bounds, and its runs repeat bit for bit.
TEST(GptCuda, FusedAttentionLossAndGradientsMatchCpuModel) {
  const Case c(fused_shape());
  const Reference want = c.cpu();
  const Reference f32 = c.gpu<float>();
  EXPECT_NEAR(f32.loss, want.loss, 1e-5 * want.loss);
  expect_grads_close(ParamLayout(c.cfg), f32.grads, want.grads, 1e-4);
  const Reference b16 = c.gpu<__nv_bfloat16>();
  EXPECT_NEAR(b16.loss, want.loss, 1e-2 * want.loss);
  expect_grads_close(ParamLayout(c.cfg), b16.grads, want.grads, 6e-2);
  for (int dtype = 0; dtype < 2; ++dtype) {
    const Reference again = dtype ? c.gpu<__nv_bfloat16>() : c.gpu<float>();
    const Reference& first = dtype ? b16 : f32;
    EXPECT_EQ(again.loss, first.loss) << "dtype " << dtype;
    size_t differ = 0;
    for (size_t i = 0; i < first.grads.size(); ++i)
      differ += again.grads[i] != first.grads[i];
    EXPECT_EQ(differ, 0u) << "dtype " << dtype << ": gradient elements that differ between runs";
  }
}

TEST(GptCuda, FusedAttentionRefusesAHeadSizeItLacks) {
  ModelConfig cfg = small();  // head size 8
  cfg.attention = AttentionImpl::fused;
  k::CudaStreamHandle stream;
  EXPECT_THROW(GptCuda<float>(cfg, 1, stream.get()), UsageError);
  cfg.attention = AttentionImpl::automatic;  // auto falls back to unfused
  GptCuda<float> m(cfg, 1, stream.get());
  EXPECT_FALSE(m.fused_attention());
}

// ---- the other members of the model family ---------------------------------------------------

struct FamilyCase {
  ModelConfig cfg;
  int B = 3;
  std::vector<float> params, values, targets;
  std::vector<int32_t> tokens, lengths, labels;
  double loss_scale = 0.75;

  FamilyCase(Task task, InputKind input, Pool pool) {
    cfg.d_model = 24;
    cfg.n_layer = 2;
    cfg.n_head = 3;
    cfg.task = task;
    cfg.input = input;
    cfg.pool = pool;
    cfg.num_outputs = task == Task::classify ? 5 : 3;
    if (input == InputKind::image) {
      cfg.image_h = 12, cfg.image_w = 9, cfg.channels = 3, cfg.patch = 3, cfg.seq_len = 12;
    } else if (input == InputKind::series) {
      cfg.seq_len = 13, cfg.features = 7;
    } else {
      cfg.vocab_size = 67, cfg.seq_len = 11, cfg.padded = true;
    }
    const ParamLayout layout(cfg);
    params.resize(layout.total());
    init_gpt_params<float>(layout, cfg.n_layer, 21, params);
    for (size_t i = 0; i < params.size(); ++i)
      params[i] += static_cast<float>(0.05 * random_normal(22, 3, i));
    if (input == InputKind::tokens) {
      for (int i = 0; i < B * cfg.seq_len; ++i)
        tokens.push_back(static_cast<int32_t>(random_u64(23, 1, i) % cfg.vocab_size));
      for (int b = 0; b < B; ++b)
        lengths.push_back(1 + static_cast<int32_t>(random_u64(23, 2, b) % cfg.seq_len));
    } else {
      for (int i = 0; i < B * cfg.input_values(); ++i)
        values.push_back(static_cast<float>(input == InputKind::image ? random_unit(23, 3, i)
                                                                      : random_normal(23, 3, i)));
    }
    for (int b = 0; b < B && task == Task::classify; ++b)
      labels.push_back(static_cast<int32_t>(random_u64(23, 4, b) % cfg.num_outputs));
    for (int i = 0; i < B * cfg.num_outputs && task == Task::regress; ++i)
      targets.push_back(static_cast<float>(random_normal(23, 5, i)));
  }
  datasets::Batch batch() const {
    auto p = [](const auto& v) { return v.empty() ? nullptr : v.data(); };
    return datasets::Batch{B, p(tokens), p(values), p(lengths), p(labels), p(targets)};
  }

  struct Result {
    double loss;
    std::vector<double> grads, outputs;
  };
  Result cpu() const {
    Gpt<double> m(cfg, B);
    std::copy(params.begin(), params.end(), m.params().begin());
    m.zero_grads();
    Result r;
    r.loss = m.forward(batch());
    r.outputs.assign(m.outputs().begin(), m.outputs().end());
    m.backward(loss_scale);
    r.grads.assign(m.grads().begin(), m.grads().end());
    return r;
  }
  template <typename T>
  Result gpu() const {
    k::CudaStreamHandle stream;
    GptCuda<T> m(cfg, B, stream.get());
    k::copy_to_device(m.params(), params.data(), params.size(), stream.get());
    m.refresh_compute_params();
    k::DeviceBuffer<float> loss_sum(1);
    DPT_CHECK_CUDA(cudaMemsetAsync(loss_sum.get(), 0, sizeof(float), stream.get()));
    m.forward(batch(), loss_sum.get());
    std::vector<float> out(static_cast<size_t>(B) * cfg.num_outputs);
    m.outputs_to_host(out.data());
    m.backward(loss_scale);
    DPT_CHECK_CUDA(cudaStreamSynchronize(stream.get()));
    float sum = 0;
    k::copy_to_host(&sum, loss_sum.get(), 1, stream.get());
    std::vector<float> g(m.num_params());
    k::copy_to_host(g.data(), m.grads(), g.size(), stream.get());
    return {sum / static_cast<double>(m.loss_terms(B)), std::vector<double>(g.begin(), g.end()),
            std::vector<double>(out.begin(), out.end())};
  }
};

class GptCudaFamily : public ::testing::TestWithParam<std::tuple<Task, InputKind, Pool>> {};

TEST_P(GptCudaFamily, LossOutputsAndGradientsMatchCpuModelInFp32AndBf16) {
  const auto [task, input, pool] = GetParam();
  const FamilyCase c(task, input, pool);
  const auto want = c.cpu();
  const auto f32 = c.gpu<float>();
  EXPECT_NEAR(f32.loss, want.loss, 1e-5 * std::abs(want.loss));
  for (size_t i = 0; i < want.outputs.size(); ++i)
    EXPECT_NEAR(f32.outputs[i], want.outputs[i], 1e-4 * (1 + std::abs(want.outputs[i]))) << i;
  expect_grads_close(ParamLayout(c.cfg), f32.grads, want.grads, 1e-4);
  const auto bf = c.gpu<__nv_bfloat16>();
  EXPECT_NEAR(bf.loss, want.loss, 2e-2 * std::abs(want.loss));
  expect_grads_close(ParamLayout(c.cfg), bf.grads, want.grads, 8e-2);
  const auto again = c.gpu<float>();
  EXPECT_EQ(again.loss, f32.loss);
  EXPECT_EQ(again.grads, f32.grads);
}

INSTANTIATE_TEST_SUITE_P(
    Members, GptCudaFamily,
    ::testing::Values(std::make_tuple(Task::classify, InputKind::image, Pool::cls),
                      std::make_tuple(Task::classify, InputKind::image, Pool::mean),
                      std::make_tuple(Task::regress, InputKind::series, Pool::cls),
                      std::make_tuple(Task::regress, InputKind::series, Pool::mean),
                      std::make_tuple(Task::classify, InputKind::tokens, Pool::cls),
                      std::make_tuple(Task::classify, InputKind::tokens, Pool::mean),
                      std::make_tuple(Task::regress, InputKind::tokens, Pool::cls)));

// ---- [Decoder] on the GPU ----------------------------------------------------------------------

TEST(CudaDecoder, LogitsMatchTheCpuDecoderAtEveryPositionInFp32AndBf16) {
  const Case c;  // a language model with generic parameters
  std::vector<int32_t> tokens(c.cfg.seq_len);
  for (size_t t = 0; t < tokens.size(); ++t)
    tokens[t] = static_cast<int32_t>(random_u64(31, 1, t) % c.cfg.vocab_size);
  auto cpu = make_cpu_decoder(c.cfg, c.params);
  auto f32 = make_cuda_decoder(c.cfg, c.params, 0, Precision::fp32);
  auto bf = make_cuda_decoder(c.cfg, c.params, 0, Precision::bf16);
  for (size_t t = 0; t < tokens.size(); ++t) {
    const auto w = cpu->step(tokens[t]);
    const std::vector<float> want(w.begin(), w.end());
    const auto a = f32->step(tokens[t]);
    const auto b = bf->step(tokens[t]);
    double scale = 0;
    for (float v : want)
      scale = std::max(scale, std::abs(double(v)));
    for (size_t v = 0; v < want.size(); ++v) {
      ASSERT_NEAR(a[v], want[v], 1e-4 * (1 + scale)) << "fp32, position " << t << " token " << v;
      ASSERT_NEAR(b[v], want[v], 5e-2 * (1 + scale)) << "bf16, position " << t << " token " << v;
    }
  }
  EXPECT_EQ(f32->position(), c.cfg.seq_len);
}

// ---- bin/attention's maps on the GPU ------------------------------------------------------------

TEST(CudaMapsModel, AttentionAndOutputsMatchTheCpuModelInFp32AndBf16) {
  for (const auto& [task, input, pool] :
       {std::make_tuple(Task::classify, InputKind::image, Pool::cls),
        std::make_tuple(Task::classify, InputKind::tokens, Pool::mean)}) {
    const FamilyCase c(task, input, pool);
    const size_t P = c.cfg.positions(), per_layer = static_cast<size_t>(c.B) * c.cfg.n_head * P * P;
    auto cpu = make_cpu_maps_model(c.cfg, c.params, c.B);
    cpu->forward(c.batch());
    for (Precision precision : {Precision::fp32, Precision::bf16}) {
      auto gpu = make_cuda_maps_model(c.cfg, c.params, c.B, 0, precision);
      gpu->forward(c.batch());
      const double tol = precision == Precision::fp32 ? 1e-5 : 2e-2;
      for (int l = 0; l < c.cfg.n_layer; ++l) {
        std::vector<float> want(per_layer), got(per_layer);
        cpu->attention(l, want.data());
        gpu->attention(l, got.data());
        for (size_t i = 0; i < per_layer; ++i)
          ASSERT_NEAR(got[i], want[i], tol) << "layer " << l << " element " << i;
      }
    }
  }
}

}  // namespace
}  // namespace dpt::trainer
