// The shape of the attention model: one transformer trunk with a replaceable input and head
// ([Model family], trainer/gpt.h).
#pragma once

#include <cstdint>
#include <string>

namespace dpt::trainer {

// --task: what the head predicts.
enum class Task { lm, classify, regress };
const char* task_name(Task t);  // "lm", "classify", "regress"
// What the input embedding reads: token ids, images cut into patches, or series of feature
// vectors. lm reads tokens; classification and regression read any of them.
enum class InputKind { tokens, image, series };
const char* input_kind_name(InputKind k);  // "tokens", "image", "series"
// --pool: which row of the trunk's output the classification and regression heads read.
enum class Pool { cls, mean };
const char* pool_name(Pool p);  // "cls", "mean"
// --attention: how self-attention is computed ([Attention choice], trainer/gpt.h). Either way
// the same function of the inputs; fused keeps one log-sum-exp per query row instead of the
// T x T probabilities.
enum class AttentionImpl { automatic, fused, unfused };
const char* attention_impl_name(AttentionImpl a);  // "auto", "fused", "unfused"

struct ModelConfig {
  int vocab_size = 256;  // V: token ids are in [0, V); the language-model head predicts V classes
  int seq_len = 128;     // T: input positions (tokens, time steps or patches)
  int d_model = 128;     // C: width of the residual stream
  int n_layer = 4;       // L: transformer blocks
  int n_head = 4;        // NH: attention heads; head size C / NH

  Task task = Task::lm;
  InputKind input = InputKind::tokens;
  Pool pool = Pool::cls;
  int image_h = 0, image_w = 0, channels = 0;  // image inputs [H, W, C]
  int patch = 0;        // P: image patches of P x P pixels; seq_len = (H/P) * (W/P)
  int features = 0;     // F: values per time step of a series
  int num_outputs = 0;  // K: classes (classify) or targets (regress)
  bool padded = false;  // token inputs carry lengths: the attention ignores padding
  AttentionImpl attention = AttentionImpl::automatic;

  // [Padded vocabulary] (kernels/cross_entropy.h): the language model's logits rows hold
  // padded_vocab() >= V values, V rounded up to a multiple of vocab_multiple; the parameters
  // keep V. Not an option: it changes no result (1 turns it off, for the test that shows so).
  int vocab_multiple = 64;
  int padded_vocab() const {
    return (vocab_size + vocab_multiple - 1) / vocab_multiple * vocab_multiple;
  }

  int head_size() const { return d_model / n_head; }
  // A class token leads the sequence (classification and regression with --pool cls).
  bool has_cls() const { return task != Task::lm && pool == Pool::cls; }
  // Rows of the trunk: the inputs' positions, and the class token.
  int positions() const { return seq_len + (has_cls() ? 1 : 0); }
  // Values the input projection reads per position: P*P*C for images, F for series.
  int input_width() const {
    return input == InputKind::image ? patch * patch * channels : features;
  }
  // Values of one sample's input: H*W*C pixels, T*F series values.
  int input_values() const {
    return input == InputKind::image ? image_h * image_w * channels : seq_len * features;
  }
  bool causal() const { return task == Task::lm; }
  // [Attention choice]: whether the blocks run fused attention on the GPU (gpu) or the CPU.
  // auto: fused on the GPU where its kernels take the head size, unfused on the CPU. Throws
  // UsageError for --attention fused on the GPU with a head size the kernels lack.
  bool fused_attention(bool gpu) const;
  // Throws UsageError naming the option to change: the trunk's shape (what options alone
  // decide), and with it the input and head (complete once the data has been read).
  void validate_shape() const;
  void validate() const;
  std::string describe() const;  // "V=256 T=128 C=128 L=4 NH=4", and the input and head
};

}  // namespace dpt::trainer
