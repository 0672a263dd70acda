// Validation of the model shape, with messages that name the option to change.
#include "trainer/model_config.h"

#include "common/errors.h"

namespace dpt::trainer {

void ModelConfig::validate() const {
  auto positive = [](int v, const char* opt) {
    if (v <= 0)
      throw UsageError(std::string(opt) + " must be positive, got " + std::to_string(v) + ".");
  };
  positive(vocab_size, "--vocab-size");
  positive(seq_len, "--seq-len");
  positive(d_model, "--d-model");
  positive(n_layer, "--n-layer");
  positive(n_head, "--n-head");
  if (d_model % n_head != 0) {
    throw UsageError("--n-head " + std::to_string(n_head) + " does not divide --d-model " +
                     std::to_string(d_model) + ": each head needs d_model / n_head channels. " +
                     "Choose --n-head among the divisors of " + std::to_string(d_model) +
                     " (e.g. " + std::to_string(d_model % 4 == 0 ? 4 : 1) +
                     ") or change --d-model.");
  }
}

std::string ModelConfig::describe() const {
  return "V=" + std::to_string(vocab_size) + " T=" + std::to_string(seq_len) +
         " C=" + std::to_string(d_model) + " L=" + std::to_string(n_layer) +
         " NH=" + std::to_string(n_head);
}

}  // namespace dpt::trainer
