// [Decoder] The language model one position at a time, for generation: each new token runs the
// blocks on one row, and its keys and values join per-layer caches ([Attention decode]), so a
// token costs one position's work, O(L C^2 + L C t) at position t, not the whole prefix's. The
// logits equal those the training model (gpt.h) computes at the same position of the same
// tokens, up to the order of float additions (tests/trainer/decoder_test.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "trainer/model_config.h"
#include "trainer/param_layout.h"
#include "trainer/train_config.h"

namespace dpt::trainer {

// What bin/generate drives, on either processor.
class TokenDecoder {
 public:
  virtual ~TokenDecoder() = default;
  virtual int position() const = 0;  // tokens in the cache
  virtual int capacity() const = 0;  // the model's seq_len
  virtual void reset() = 0;
  // Appends token and returns the next token's logits [V] (host, fp32; valid until the next call).
  virtual std::span<const float> step(int32_t token) = 0;
  virtual std::string describe() const = 0;  // "cpu fp32", "cuda:0 bf16 (NVIDIA H100 ...)"
};

// Before a decoder appends token at position pos: the cache has room and the token is in the
// vocabulary (UsageError: a caller's id), shared by both processors.
void check_decode_step(const ModelConfig& cfg, int pos, int32_t token);

// GptDecoder<float> below.
std::unique_ptr<TokenDecoder> make_cpu_decoder(const ModelConfig& cfg,
                                               std::span<const float> params);
// The same on GPU `gpu` in `precision` (fp32 or bf16: fp32 master weights converted once, bf16
// activations and caches, fp32 accumulation); decoder_cuda.cpp. Throws UsageError in a build
// without CUDA.
std::unique_ptr<TokenDecoder> make_cuda_decoder(const ModelConfig& cfg,
                                                std::span<const float> params, int gpu,
                                                Precision precision);

template <typename T>
class GptDecoder {
 public:
  // params: the flat buffer of a language model (--task lm), [Parameter layout]. Caches hold
  // cfg.seq_len positions; everything is allocated here.
  GptDecoder(const ModelConfig& cfg, std::span<const float> params);

  int position() const { return pos_; }  // tokens in the cache
  int capacity() const { return cfg_.seq_len; }
  void reset() { pos_ = 0; }
  // Appends token at position position() (< capacity()) and returns the logits [V] of the
  // token after it (valid until the next call).
  std::span<const T> step(int32_t token);

 private:
  struct Layer {
    BlockTensors<const T> w;
    std::vector<T> k, v;  // [seq_len, C] caches
  };
  ModelConfig cfg_;
  ParamLayout layout_;
  std::vector<T> params_;
  ModelTensors<const T> tensors_;
  std::vector<Layer> layers_;
  std::vector<T> x_, ln_, qkv_, atty_, proj_, fch_, fch_gelu_, probs_, logits_;
  T mean_ = 0, rstd_ = 0;
  int pos_ = 0;
};

}  // namespace dpt::trainer
