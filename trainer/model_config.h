// The shape of the GPT-style decoder.
#pragma once

#include <cstdint>
#include <string>

namespace dpt::trainer {

struct ModelConfig {
  int vocab_size = 256;  // V: token ids are in [0, V); the output head predicts V classes
  int seq_len = 128;     // T: context length (and rows of the position embedding)
  int d_model = 128;     // C: width of the residual stream
  int n_layer = 4;       // L: transformer blocks
  int n_head = 4;        // NH: attention heads; head size C / NH

  int head_size() const { return d_model / n_head; }
  // Throws UsageError naming the option to change.
  void validate() const;
  std::string describe() const;  // "V=256 T=128 C=128 L=4 NH=4"
};

}  // namespace dpt::trainer
