// Validation of the model shape, with messages that name the option to change.
#include "trainer/model_config.h"

#include "common/errors.h"
#include "kernels/flash_attention.h"

namespace dpt::trainer {

const char* task_name(Task t) {
  switch (t) {
    case Task::lm:
      return "lm";
    case Task::classify:
      return "classify";
    case Task::regress:
      return "regress";
  }
  return "?";
}

const char* input_kind_name(InputKind k) {
  switch (k) {
    case InputKind::tokens:
      return "tokens";
    case InputKind::image:
      return "image";
    case InputKind::series:
      return "series";
  }
  return "?";
}

const char* pool_name(Pool p) {
  return p == Pool::cls ? "cls" : "mean";
}

const char* attention_impl_name(AttentionImpl a) {
  switch (a) {
    case AttentionImpl::automatic:
      return "auto";
    case AttentionImpl::fused:
      return "fused";
    case AttentionImpl::unfused:
      return "unfused";
  }
  return "?";
}

bool ModelConfig::fused_attention(bool gpu) const {
  switch (attention) {
    case AttentionImpl::unfused:
      return false;
    case AttentionImpl::automatic:
      return gpu && kernels::flash_attention_cuda_supports(head_size());
    case AttentionImpl::fused:
      if (gpu && !kernels::flash_attention_cuda_supports(head_size())) {
        std::string msg =
            "--attention fused: the GPU's fused attention takes head sizes 32, 64 "
            "and 128, and --d-model ";
        msg += std::to_string(d_model);
        msg += " / --n-head ";
        msg += std::to_string(n_head);
        msg += " gives ";
        msg += std::to_string(head_size());
        msg +=
            ". Pass --attention unfused (or auto), or choose --n-head so that the head size "
            "is one of them.";
        throw UsageError(msg);
      }
      return true;
  }
  return false;
}

void ModelConfig::validate_shape() const {
  auto positive = [](int v, const char* opt) {
    if (v <= 0)
      throw UsageError(std::string(opt) + " must be positive, got " + std::to_string(v) + ".");
  };
  if (input == InputKind::tokens) positive(vocab_size, "--vocab-size");
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

void ModelConfig::validate() const {
  validate_shape();
  auto positive = [](int v, const char* opt) {
    if (v <= 0)
      throw UsageError(std::string(opt) + " must be positive, got " + std::to_string(v) + ".");
  };
  if (task == Task::lm && input != InputKind::tokens) {
    throw UsageError(std::string("--task lm predicts the next token, but the data holds ") +
                     input_kind_name(input) +
                     " samples: pass --task classify or regress for sample shards");
  }
  if (task != Task::lm && num_outputs < 1) {
    throw UsageError(std::string("--task ") + task_name(task) +
                     " needs the number of classes or targets, which the data gives: check "
                     "that --data holds sample shards");
  }
  if (task == Task::classify && num_outputs < 2) {
    throw UsageError("--task classify needs at least 2 classes, the data has " +
                     std::to_string(num_outputs));
  }
  if (input == InputKind::image) {
    positive(patch, "--patch");
    if (image_h % patch != 0 || image_w % patch != 0) {
      throw UsageError("--patch " + std::to_string(patch) + " does not divide the images' " +
                       std::to_string(image_h) + " x " + std::to_string(image_w) +
                       " pixels: choose a common divisor of both (the Vision Transformer cuts "
                       "each image into whole P x P patches)");
    }
    if (seq_len != (image_h / patch) * (image_w / patch)) {
      throw UsageError("--seq-len " + std::to_string(seq_len) + " contradicts " +
                       std::to_string(image_h / patch) + " x " + std::to_string(image_w / patch) +
                       " patches of " + std::to_string(patch) +
                       " pixels: leave --seq-len out for images (it is the patch count)");
    }
  }
  if (input == InputKind::series) positive(features, "series features");
}

std::string ModelConfig::describe() const {
  std::string s;
  if (input == InputKind::tokens) s = "V=" + std::to_string(vocab_size) + " ";
  s += "T=" + std::to_string(seq_len) + " C=" + std::to_string(d_model) +
       " L=" + std::to_string(n_layer) + " NH=" + std::to_string(n_head);
  if (task == Task::lm) return s;
  s += std::string(" | ") + input_kind_name(input);
  if (input == InputKind::image) {
    s += " " + std::to_string(image_h) + "x" + std::to_string(image_w) + "x" +
         std::to_string(channels) + " in " + std::to_string(patch) + "x" + std::to_string(patch) +
         " patches";
  } else if (input == InputKind::series) {
    s += " of " + std::to_string(features) + " feature(s)";
  } else if (padded) {
    s += " with padding";
  }
  s += std::string(", bidirectional, ") + pool_name(pool) + " pooling, " + task_name(task) +
       " head of " + std::to_string(num_outputs) +
       (task == Task::classify ? " classes" : " targets");
  return s;
}

}  // namespace dpt::trainer
