// [Sampling] The next token from a language model's logits, as Hugging Face's generate does it:
// greedy at temperature 0; otherwise softmax(logits / temperature), restricted to the top_k most
// likely tokens (0: no limit) and then to the smallest set of the most likely whose probability
// reaches top_p (1: no limit), renormalized, and drawn with the counter-based generator at
// (seed, index of the generated token): the same seed gives the same text on any machine.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace dpt::trainer {

struct SamplingConfig {
  double temperature = 1.0;
  int top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 1;
  // Throws UsageError naming the option (--temperature, --top-k, --top-p) to change.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(SamplingConfig cfg);
  int32_t next(std::span<const float> logits, uint64_t index);

 private:
  SamplingConfig cfg_;
  std::vector<std::pair<double, int32_t>> ranked_;  // (probability, token), most likely first
};

}  // namespace dpt::trainer
