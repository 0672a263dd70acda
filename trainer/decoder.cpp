// The one-position forward pass of the language model over the CPU kernels.
#include "trainer/decoder.h"

#include <algorithm>

#include "common/errors.h"
#include "kernels/attention.h"
#include "kernels/gelu.h"
#include "kernels/layernorm.h"
#include "kernels/linear.h"

namespace dpt::trainer {

namespace k = dpt::kernels;

void check_decode_step(const ModelConfig& cfg, int pos, int32_t token) {
  DPT_CHECK(pos < cfg.seq_len, "the key/value cache is full (" + std::to_string(cfg.seq_len) +
                                   " positions): reset() and start again");
  if (token < 0 || token >= cfg.vocab_size)
    throw UsageError("token " + std::to_string(token) + " is outside the vocabulary [0, " +
                     std::to_string(cfg.vocab_size) + ")");
}

template <typename T>
GptDecoder<T>::GptDecoder(const ModelConfig& cfg, std::span<const float> params)
    : cfg_(cfg), layout_(cfg), params_(params.begin(), params.end()) {
  cfg_.validate();
  if (cfg_.task != Task::lm)
    throw UsageError(std::string("generation needs a language model; this checkpoint's task is ") +
                     task_name(cfg_.task));
  DPT_CHECK(params.size() == layout_.total(), "parameter count differs from the model");
  tensors_ = model_tensors<const T>(layout_, cfg_, params_.data());
  const size_t C = cfg.d_model, T_ = cfg.seq_len;
  for (const BlockTensors<const T>& w : tensors_.blocks)
    layers_.push_back({w, std::vector<T>(T_ * C), std::vector<T>(T_ * C)});
  x_.resize(C);
  ln_.resize(C);
  qkv_.resize(3 * C);
  atty_.resize(C);
  proj_.resize(C);
  fch_.resize(4 * C);
  fch_gelu_.resize(4 * C);
  probs_.resize(static_cast<size_t>(cfg.n_head) * T_);
  logits_.resize(cfg.vocab_size);
}

template <typename T>
std::span<const T> GptDecoder<T>::step(int32_t token) {
  const int C = cfg_.d_model, V = cfg_.vocab_size;
  check_decode_step(cfg_, pos_, token);
  // Token and position embedding.
  const T* te = tensors_.wte + static_cast<size_t>(token) * C;
  const T* pe = tensors_.wpe + static_cast<size_t>(pos_) * C;
  for (int c = 0; c < C; ++c)
    x_[c] = te[c] + pe[c];
  for (Layer& L : layers_) {
    // x + attn(ln1(x)), with this position's key and value joining the caches.
    k::layernorm_forward_cpu(ln_.data(), &mean_, &rstd_, x_.data(), L.w.ln1_w, L.w.ln1_b, 1, C);
    k::linear_forward_cpu(qkv_.data(), ln_.data(), L.w.qkv_w, L.w.qkv_b, 1, C, 3 * C);
    std::copy_n(qkv_.data() + C, C, L.k.data() + static_cast<size_t>(pos_) * C);
    std::copy_n(qkv_.data() + 2 * C, C, L.v.data() + static_cast<size_t>(pos_) * C);
    k::attention_decode_cpu(atty_.data(), probs_.data(), qkv_.data(), L.k.data(), L.v.data(),
                            pos_ + 1, C, cfg_.n_head);
    k::linear_forward_cpu(proj_.data(), atty_.data(), L.w.proj_w, L.w.proj_b, 1, C, C);
    for (int c = 0; c < C; ++c)
      x_[c] += proj_[c];
    // x + mlp(ln2(x)).
    k::layernorm_forward_cpu(ln_.data(), &mean_, &rstd_, x_.data(), L.w.ln2_w, L.w.ln2_b, 1, C);
    k::linear_forward_cpu(fch_.data(), ln_.data(), L.w.fc_w, L.w.fc_b, 1, C, 4 * C);
    k::gelu_forward_cpu(fch_gelu_.data(), fch_.data(), static_cast<size_t>(4 * C));
    k::linear_forward_cpu(proj_.data(), fch_gelu_.data(), L.w.fcproj_w, L.w.fcproj_b, 1, 4 * C, C);
    for (int c = 0; c < C; ++c)
      x_[c] += proj_[c];
  }
  k::layernorm_forward_cpu(ln_.data(), &mean_, &rstd_, x_.data(), tensors_.lnf_w, tensors_.lnf_b, 1,
                           C);
  k::linear_forward_cpu(logits_.data(), ln_.data(), tensors_.wte, static_cast<const T*>(nullptr), 1,
                        C, V);
  ++pos_;
  return logits_;
}

template class GptDecoder<float>;
template class GptDecoder<double>;

namespace {
class CpuDecoder final : public TokenDecoder {
 public:
  CpuDecoder(const ModelConfig& cfg, std::span<const float> params) : d_(cfg, params) {}
  int position() const override { return d_.position(); }
  int capacity() const override { return d_.capacity(); }
  void reset() override { d_.reset(); }
  std::span<const float> step(int32_t token) override { return d_.step(token); }
  std::string describe() const override { return "cpu fp32"; }

 private:
  GptDecoder<float> d_;
};
}  // namespace

std::unique_ptr<TokenDecoder> make_cpu_decoder(const ModelConfig& cfg,
                                               std::span<const float> params) {
  return std::make_unique<CpuDecoder>(cfg, params);
}

#ifndef DPT_HAVE_CUDA
std::unique_ptr<TokenDecoder> make_cuda_decoder(const ModelConfig&, std::span<const float>, int,
                                                Precision) {
  throw UsageError(
      "--device cuda, but this build has no CUDA: rebuild with CUDA, or pass "
      "--device cpu");
}
#endif

}  // namespace dpt::trainer
