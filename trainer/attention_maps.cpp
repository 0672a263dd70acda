// Attention rollout in double.
#include "trainer/attention_maps.h"

#include <algorithm>

#include "common/errors.h"
#include "trainer/gpt.h"

namespace dpt::trainer {

std::vector<double> attention_rollout(std::span<const float> att, int L, int NH, int T) {
  const size_t TT = static_cast<size_t>(T) * T;
  DPT_CHECK(L > 0 && NH > 0 && T > 0 && att.size() == static_cast<size_t>(L) * NH * TT,
            "attention_rollout: att must be [L, NH, T, T]");
  std::vector<double> rollout(TT, 0.0), w(TT), next(TT);
  for (int i = 0; i < T; ++i)
    rollout[static_cast<size_t>(i) * T + i] = 1.0;
  for (int l = 0; l < L; ++l) {
    // W = 0.5 mean_h(A) + 0.5 I, rows renormalized.
    for (int i = 0; i < T; ++i) {
      double row = 0;
      for (int j = 0; j < T; ++j) {
        double a = 0;
        for (int h = 0; h < NH; ++h)
          a += att[((static_cast<size_t>(l) * NH + h) * T + i) * T + j];
        const double v = 0.5 * a / NH + (i == j ? 0.5 : 0.0);
        w[static_cast<size_t>(i) * T + j] = v;
        row += v;
      }
      for (int j = 0; j < T; ++j)
        w[static_cast<size_t>(i) * T + j] /= row;
    }
    // rollout = W_l . rollout
    for (int i = 0; i < T; ++i)
      for (int j = 0; j < T; ++j) {
        double s = 0;
        for (int k = 0; k < T; ++k)
          s += w[static_cast<size_t>(i) * T + k] * rollout[static_cast<size_t>(k) * T + j];
        next[static_cast<size_t>(i) * T + j] = s;
      }
    rollout.swap(next);
  }
  return rollout;
}

namespace {
class CpuMapsModel final : public MapsModel {
 public:
  CpuMapsModel(const ModelConfig& cfg, std::span<const float> params, int max_batch)
      : m_(cfg, max_batch) {
    DPT_CHECK(params.size() == m_.params().size(), "parameter count differs from the model");
    std::copy(params.begin(), params.end(), m_.params().begin());
  }
  void forward(const datasets::Batch& batch) override { m_.forward(batch); }
  void attention(int l, float* out) override { std::ranges::copy(m_.attention(l), out); }
  void outputs(float* out) override {
    if (m_.config().task == Task::lm) {
      std::ranges::copy(m_.lm_logits(), out);
    } else {
      std::ranges::copy(m_.outputs(), out);
    }
  }
  std::string describe() const override { return "cpu fp32"; }

 private:
  Gpt<float> m_;
};
}  // namespace

std::unique_ptr<MapsModel> make_cpu_maps_model(const ModelConfig& cfg,
                                               std::span<const float> params, int max_batch) {
  return std::make_unique<CpuMapsModel>(cfg, params, max_batch);
}

#ifndef DPT_HAVE_CUDA
std::unique_ptr<MapsModel> make_cuda_maps_model(const ModelConfig&, std::span<const float>, int,
                                                int, Precision) {
  throw UsageError(
      "--device cuda, but this build has no CUDA: rebuild with CUDA, or pass "
      "--device cpu");
}
#endif

}  // namespace dpt::trainer
