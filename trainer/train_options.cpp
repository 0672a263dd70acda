// [Option table] of bin/train, and its front ends: Boost.program_options for the command line and
// config files, --help, the checks, and the config text of checkpoints.
#include "trainer/train_options.h"

#include <boost/program_options.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string_view>
#include <type_traits>
#include <utility>

#include "common/errors.h"
#include "job/stop_request.h"

namespace dpt::trainer {

namespace po = boost::program_options;

namespace {

// ---- value codecs: text <-> typed field -------------------------------------------------------

[[noreturn]] void bad_value(const char* name, const std::string& text, const std::string& why) {
  throw UsageError("--" + std::string(name) + " " + text + ": " + why + ".");
}

// Numbers as Boost's lexical_cast took them before the table (an optional leading '+'; for
// floating values also inf and nan, which the options' checks judge), so that every config a
// checkpoint recorded still reads.
std::string_view unsigned_part(const std::string& text) {
  std::string_view t = text;
  if (t.size() > 1 && t[0] == '+' && t[1] != '-') t.remove_prefix(1);
  return t;
}

template <typename T>
T parse_integer(const char* name, const std::string& text) {
  const std::string_view t = unsigned_part(text);
  T v{};
  const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec == std::errc::result_out_of_range) bad_value(name, text, "out of range");
  if (ec != std::errc() || ptr != t.data() + t.size() || t.empty())
    bad_value(name, text, "not an integer; pass e.g. --" + std::string(name) + " 10");
  return v;
}

double parse_number(const char* name, const std::string& text) {
  const std::string_view t = unsigned_part(text);
  double v = 0;
  const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || ptr != t.data() + t.size() || t.empty())
    bad_value(name, text, "not a number; pass e.g. --" + std::string(name) + " 0.5");
  return v;
}

// The shortest text that reads back to the same double (so a recorded config is exact).
std::string print_number(double v) {
  char buf[32];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, ec == std::errc() ? ptr : buf);
}

// The words Boost.program_options takes for a switch, and no others.
std::optional<bool> switch_word(const std::string& text) {
  std::string t;
  for (char ch : text)
    t += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (t == "true" || t == "1" || t == "yes" || t == "on") return true;
  if (t == "false" || t == "0" || t == "no" || t == "off") return false;
  return std::nullopt;
}

template <typename T>
struct Codec;
template <>
struct Codec<int> {
  static int parse(const char* n, const std::string& t) { return parse_integer<int>(n, t); }
  static std::string print(int v) { return std::to_string(v); }
};
template <>
struct Codec<int64_t> {
  static int64_t parse(const char* n, const std::string& t) { return parse_integer<int64_t>(n, t); }
  static std::string print(int64_t v) { return std::to_string(v); }
};
template <>
struct Codec<double> {
  static double parse(const char* n, const std::string& t) { return parse_number(n, t); }
  static std::string print(double v) { return print_number(v); }
};
// A text value (a path, a range) must read back from the config text a checkpoint records,
// an INI file read by Boost.program_options: a line break would end the line (and the rest
// would read as another option), '#' starts a comment there, and spaces around a value are
// trimmed. Such values are refused when given, not recorded wrong (the fuzzer found the first).
template <>
struct Codec<std::string> {
  static std::string parse(const char* n, const std::string& t) {
    if (t.find_first_of(std::string("\n\r\0", 3)) != std::string::npos)
      bad_value(n, "(a value with a line break)",
                "a value with a line break cannot be recorded in a checkpoint's options; rename "
                "the path");
    if (t.find('#') != std::string::npos)
      bad_value(n, t,
                "'#' starts a comment in the options a checkpoint records (and in --config "
                "files); rename the path or reach it through a symbolic link without '#'");
    if (!t.empty() && (std::isspace(static_cast<unsigned char>(t.front())) ||
                       std::isspace(static_cast<unsigned char>(t.back()))))
      bad_value(n, "'" + t + "'", "a value may not begin or end with a space");
    return t;
  }
  static std::string print(const std::string& v) { return v; }
};
template <>
struct Codec<bool> {
  static bool parse(const char* n, const std::string& t) {
    const auto b = switch_word(t);
    if (!b) bad_value(n, t, "not a switch value; pass true or false (or the option alone)");
    return *b;
  }
  static std::string print(bool v) { return v ? "true" : "false"; }
};

using Check = std::function<void(const TrainConfig&)>;

void require(bool ok, const std::string& msg) {
  if (!ok) throw UsageError(msg);
}
std::string num(int64_t v) {
  return std::to_string(v);
}

// The parts every entry has; the rest is set by the builders below.
OptionSpec entry(const char* name, const char* group, std::string help,
                 OnResume rule = OnResume::may_change) {
  OptionSpec o;
  o.name = name;
  o.group = group;
  o.help = std::move(help);
  o.on_resume = rule;
  return o;
}

// An option whose field has a Codec: `field` is a generic lambda returning the member.
template <typename Field>
OptionSpec option(const char* name, const char* group, std::string help, Field field,
                  Check check = {}, OnResume rule = OnResume::may_change) {
  using T = std::remove_cvref_t<decltype(field(std::declval<TrainConfig&>()))>;
  OptionSpec o = entry(name, group, std::move(help), rule);
  o.is_switch = std::is_same_v<T, bool>;
  o.parse = [name, field](TrainConfig& c, const std::string& t) {
    field(c) = Codec<T>::parse(name, t);
  };
  o.print = [field](const TrainConfig& c) { return Codec<T>::print(field(c)); };
  o.check = std::move(check);
  o.default_text = o.print(TrainConfig{});
  return o;
}

// An enumeration: its choices named once.
template <typename E>
struct Choice {
  const char* name;
  E value;
};

template <typename E, size_t N, typename Field>
OptionSpec choice_option(const char* name, const char* group, std::string help, Field field,
                         const Choice<E> (&choices)[N], OnResume rule = OnResume::may_change) {
  std::vector<Choice<E>> all(choices, choices + N);
  OptionSpec o = entry(name, group, std::move(help), rule);
  o.parse = [name, field, all](TrainConfig& c, const std::string& t) {
    for (const auto& ch : all)
      if (t == ch.name) {
        field(c) = ch.value;
        return;
      }
    std::string list;
    for (size_t i = 0; i < all.size(); ++i)
      list += std::string(i == 0                ? ""
                          : i + 1 == all.size() ? " or "
                                                : ", ") +
              "'" + all[i].name + "'";
    throw UsageError("--" + std::string(name) + " must be " + list + ", got '" + t + "'.");
  };
  o.print = [field, all](const TrainConfig& c) -> std::string {
    for (const auto& ch : all)
      if (field(c) == ch.value) return ch.name;
    return "?";
  };
  o.default_text = o.print(TrainConfig{});
  return o;
}

// A member of TrainConfig, for option() and choice_option(): works on const and mutable configs.
#define DPT_FIELD(member) \
  [](auto& c) -> auto& {  \
    return c.member;      \
  }

constexpr Choice<datasets::ShuffleMode> kShuffles[] = {{"full", datasets::ShuffleMode::full},
                                                       {"local", datasets::ShuffleMode::local}};
constexpr Choice<job::Device> kDevices[] = {
    {"cpu", job::Device::cpu}, {"cuda", job::Device::cuda}, {"auto", job::Device::automatic}};
constexpr Choice<Precision> kPrecisions[] = {
    {"fp32", Precision::fp32}, {"bf16", Precision::bf16}, {"auto", Precision::automatic}};
constexpr Choice<NonFinitePolicy> kNonFinite[] = {{"stop", NonFinitePolicy::stop},
                                                  {"skip", NonFinitePolicy::skip}};

constexpr Choice<CkptOnError> kCkptOnError[] = {{"stop", CkptOnError::stop},
                                                {"continue", CkptOnError::go_on}};

constexpr Choice<Pool> kPools[] = {{"cls", Pool::cls}, {"mean", Pool::mean}};
constexpr Choice<AttentionImpl> kAttentionImpls[] = {{"auto", AttentionImpl::automatic},
                                                     {"fused", AttentionImpl::fused},
                                                     {"unfused", AttentionImpl::unfused}};

constexpr Choice<ZeroStage> kZeroStages[] = {{"auto", ZeroStage::automatic},
                                             {"0", ZeroStage::off},
                                             {"1", ZeroStage::optimizer},
                                             {"2", ZeroStage::gradients}};

constexpr const char* kGeneral = "General";
constexpr const char* kData = "Data";
constexpr const char* kModel = "Model";
constexpr const char* kTraining = "Training";
constexpr const char* kCheckpoints = "Checkpoints (docs/checkpoints.md)";
constexpr const char* kJobs = "Cluster jobs (docs/slurm.md)";

// --seed: all of [0, 2^64), parsed by hand (from_chars would take "-1" for no unsigned type, but
// the message should say what the range is).
OptionSpec seed_option() {
  OptionSpec o =
      entry("seed", kGeneral, "seed of initialization and sample order (an integer in [0, 2^64))",
            OnResume::must_match);
  o.parse = [](TrainConfig& c, const std::string& t) {
    const bool digits =
        !t.empty() && t.size() <= 20 && t.find_first_not_of("0123456789") == std::string::npos;
    errno = 0;
    const unsigned long long v = digits ? std::strtoull(t.c_str(), nullptr, 10) : 0;
    if (!digits || errno == ERANGE)
      throw UsageError("--seed " + t + " is not an integer in [0, 2^64): pass e.g. --seed 42.");
    c.seed = v;
  };
  o.print = [](const TrainConfig& c) { return std::to_string(c.seed); };
  o.default_text = o.print(TrainConfig{});
  return o;
}

// --vocab-size: given, it turns off taking the vocabulary from the data; recorded resolved.
OptionSpec vocab_option() {
  OptionSpec o =
      entry("vocab-size", kModel, "vocabulary size (default: from the data)", OnResume::must_match);
  o.parse = [](TrainConfig& c, const std::string& t) {
    c.model.vocab_size = parse_integer<int>("vocab-size", t);
    c.vocab_from_data = false;
  };
  o.print = [](const TrainConfig& c) { return std::to_string(c.model.vocab_size); };
  return o;
}

// --task: given, the data must agree with it; recorded resolved.
OptionSpec task_option() {
  OptionSpec o = entry("task", kModel,
                       "'lm' (next-token prediction on token shards), 'classify' or 'regress' "
                       "(sample shards with /labels or /targets; docs/data-format.md). Default: "
                       "from the data",
                       OnResume::must_match);
  o.parse = [](TrainConfig& c, const std::string& t) {
    const Task tasks[] = {Task::lm, Task::classify, Task::regress};
    for (Task k : tasks) {
      if (t == task_name(k)) {
        c.model.task = k;
        c.task_from_data = false;
        return;
      }
    }
    throw UsageError("--task must be 'lm', 'classify' or 'regress', got '" + t + "'.");
  };
  o.print = [](const TrainConfig& c) { return std::string(task_name(c.model.task)); };
  return o;
}

// --seq-len: given with sample shards, it must be their length.
OptionSpec seq_len_option() {
  OptionSpec o = entry("seq-len", kModel,
                       "context length T (token shards; sample shards give it: a text's or "
                       "series' length, an image's patch count)",
                       OnResume::must_match);
  o.parse = [](TrainConfig& c, const std::string& t) {
    c.model.seq_len = parse_integer<int>("seq-len", t);
    c.seq_len_given = true;
  };
  o.print = [](const TrainConfig& c) { return std::to_string(c.model.seq_len); };
  o.default_text = o.print(TrainConfig{});
  return o;
}

OptionSpec resume_option() {
  OptionSpec o = entry("resume", kCheckpoints,
                       "'auto': continue from the newest valid checkpoint in --ckpt-dir, else "
                       "start fresh; 'never': start fresh (refused if --ckpt-dir holds "
                       "checkpoints); or the PATH of one checkpoint directory");
  o.parse = [](TrainConfig& c, const std::string& t) {
    using Mode = checkpoint::ResumeRequest::Mode;
    require(!t.empty(), "--resume must be 'auto', 'never' or the path of a checkpoint.");
    c.resume = {t == "auto"    ? Mode::automatic
                : t == "never" ? Mode::never
                               : Mode::path,
                t == "auto" || t == "never" ? "" : t};
  };
  o.print = [](const TrainConfig& c) { return c.resume.text(); };
  o.default_text = o.print(TrainConfig{});
  return o;
}

// --trace-steps A-B: both ends included; "A-" or "all" leaves the end open.
OptionSpec trace_steps_option() {
  OptionSpec o = entry("trace-steps", kGeneral,
                       "the steps --trace records: 'A-B' (both included), 'A-' (from A to the "
                       "end) or 'all'",
                       OnResume::run_only);
  o.parse = [](TrainConfig& c, const std::string& t) {
    const std::string fix =
        "--trace-steps must be 'A-B' (e.g. '10-20'), 'A-' or 'all', got '" + t + "'.";
    if (t == "all") {
      c.trace_first_step = 1;
      c.trace_last_step = 0;
      return;
    }
    const size_t dash = t.find('-');
    require(dash != std::string::npos && dash > 0, fix);
    auto number = [&](const std::string& s) {
      require(
          !s.empty() && s.find_first_not_of("0123456789") == std::string::npos && s.size() <= 18,
          fix);
      return std::stoll(s);
    };
    c.trace_first_step = number(t.substr(0, dash));
    c.trace_last_step = dash + 1 == t.size() ? 0 : number(t.substr(dash + 1));
  };
  o.print = [](const TrainConfig& c) -> std::string {
    if (c.trace_first_step == 1 && c.trace_last_step == 0) return "all";
    return std::to_string(c.trace_first_step) + "-" +
           (c.trace_last_step > 0 ? std::to_string(c.trace_last_step) : "");
  };
  o.check = [](const TrainConfig& c) {
    require(c.trace_first_step >= 1, "--trace-steps: the first step must be >= 1.");
    require(c.trace_last_step == 0 || c.trace_last_step >= c.trace_first_step,
            "--trace-steps A-B needs A <= B.");
  };
  o.default_text = o.print(TrainConfig{});
  return o;
}

OptionSpec preempt_signal_option() {
  OptionSpec o = entry("preempt-signal", kJobs,
                       "signal that asks for a checkpoint and a stop, e.g. from '#SBATCH "
                       "--signal=USR2@120' (USR1, USR2, INT, HUP, ALRM, or 'none'); SIGTERM "
                       "always does the same, without requeue");
  o.parse = [](TrainConfig& c, const std::string& t) { c.preempt_signal = job::signal_number(t); };
  o.print = [](const TrainConfig& c) -> std::string {
    if (c.preempt_signal == 0) return "none";
    const std::string s = job::signal_name(c.preempt_signal);
    return s.rfind("SIG", 0) == 0 ? s.substr(3) : s;
  };
  o.default_text = o.print(TrainConfig{});
  return o;
}

// General: the data, outputs, seed, threads and processor.
void general_options(std::vector<OptionSpec>& t) {
  // clang-format off
  t.push_back(option("data", kGeneral,
      "training shards: a directory of *.h5, a quoted glob, or one file (docs/data-format.md)",
      DPT_FIELD(data), [](const TrainConfig& c) {
        require(!c.data.empty(),
                "no training data: pass --data SHARDS (a directory of *.h5 shards, a glob, or "
                "one shard; bin/prepare-data makes them from text).");
      }));
  t.push_back(option("metrics", kGeneral,
      "write one JSON object per optimizer step to this file (rank 0)", DPT_FIELD(metrics)));
  t.push_back(seed_option());
  t.push_back(option("threads", kGeneral,
      "CPU threads per rank (0: OMP_NUM_THREADS, else the CPUs the rank is bound to, else the "
      "node's cores / ranks on the node)", DPT_FIELD(threads), [](const TrainConfig& c) {
        require(c.threads >= 0, "--threads must be >= 0 (0 picks a default; see --help).");
      }));
  t.push_back(option("log-every", kGeneral, "print a progress line every N steps",
      DPT_FIELD(log_every), [](const TrainConfig& c) {
        require(c.log_every > 0, "--log-every must be positive.");
      }));
  t.push_back(option("check-sync-every", kGeneral,
      "compare parameter hashes across ranks every N steps (0: at start and end only)",
      DPT_FIELD(check_sync_every), [](const TrainConfig& c) {
        require(c.check_sync_every >= 0, "--check-sync-every must be >= 0.");
      }));
  t.push_back(option("peak-tflops", kGeneral,
      "peak TFLOP/s of one rank's processor, the denominator of mfu (0: NVIDIA's dense peak of "
      "the GPU by name, or a measured fp32 GEMM on the CPU)", DPT_FIELD(peak_tflops),
      [](const TrainConfig& c) {
        require(c.peak_tflops >= 0, "--peak-tflops must be >= 0 (0: from the processor).");
      }));
  t.push_back(option("trace", kGeneral,
      "write a timeline of every rank (Chrome trace-event JSON for ui.perfetto.dev or "
      "chrome://tracing) of the --trace-steps to this file (rank 0)", DPT_FIELD(trace), {},
      OnResume::run_only));
  t.push_back(trace_steps_option());
  t.push_back(choice_option("device", kGeneral,
      "'cpu', 'cuda' or 'auto' (cuda when this build has CUDA and every rank has a GPU of its "
      "own, else cpu)", DPT_FIELD(device), kDevices));
  t.push_back(choice_option("dtype", kGeneral,
      "compute precision: 'fp32', 'bf16' (bf16 activations and matrix products, fp32 master "
      "weights, gradients and AdamW state; --device cuda only) or 'auto' (bf16 on cuda, fp32 on "
      "cpu)", DPT_FIELD(dtype), kPrecisions));
  // clang-format on
}

// Data: validation, sample order, reading.
void data_options(std::vector<OptionSpec>& t) {
  const auto must = OnResume::must_match;
  // clang-format off
  t.push_back(option("val-data", kData,
      "held-out shards for the validation loss (same forms as --data)", DPT_FIELD(val_data)));
  t.push_back(option("val-every", kData,
      "validation loss every N steps and after the last (0: after the last only)",
      DPT_FIELD(val_every), [](const TrainConfig& c) {
        require(c.val_every >= 0, "--val-every must be >= 0 (0: after the last step only).");
      }));
  t.push_back(option("val-samples", kData,
      "held-out samples evaluated each time (evenly spaced over --val-data, fixed for the run)",
      DPT_FIELD(val_samples), [](const TrainConfig& c) {
        require(c.val_samples > 0, "--val-samples must be positive.");
      }));
  t.push_back(choice_option("shuffle", kData,
      "sample order: 'full' (a permutation of all samples per epoch) or 'local' (shards "
      "shuffled, then samples within windows of --shuffle-window shards; reads stay local)",
      DPT_FIELD(shuffle.mode), kShuffles, must));
  t.push_back(option("shuffle-window", kData, "shards per window of --shuffle local",
      DPT_FIELD(shuffle.window_shards), [](const TrainConfig& c) {
        require(c.shuffle.window_shards > 0,
                "--shuffle-window must be positive (shards per window).");
      }, must));
  t.push_back(option("prefetch", kData, "micro-batches the I/O thread reads ahead",
      DPT_FIELD(prefetch), [](const TrainConfig& c) {
        require(c.prefetch > 0, "--prefetch must be positive (micro-batches read ahead).");
      }));
  t.push_back(option("data-cache-mb", kData, "HDF5 chunk-cache budget of the reader, MiB",
      DPT_FIELD(data_cache_mb), [](const TrainConfig& c) {
        require(c.data_cache_mb >= 0, "--data-cache-mb must be >= 0.");
      }));
  t.push_back(option("index-cache", kData,
      "directory for shard indexes (default: a .dptrain-index file beside the shards)",
      DPT_FIELD(index_cache)));
  // clang-format on
}

// Model: the shape (ModelConfig::validate checks it as a whole).
void model_options(std::vector<OptionSpec>& t) {
  const auto must = OnResume::must_match;
  // clang-format off
  t.push_back(task_option());
  t.push_back(vocab_option());
  t.push_back(seq_len_option());
  t.push_back(option("patch", kModel,
      "image patches of P x P pixels, as the Vision Transformer (0: the smallest P dividing "
      "the images' height and width into at most 64 patches)", DPT_FIELD(model.patch),
      [](const TrainConfig& c) { require(c.model.patch >= 0, "--patch must be >= 0 (0: auto)."); },
      must));
  t.push_back(choice_option("pool", kModel,
      "what the classification or regression head reads: 'cls' (a learned class token leading "
      "the sequence) or 'mean' (the mean of the valid positions)", DPT_FIELD(model.pool), kPools,
      must));
  t.push_back(option("d-model", kModel, "width C of the residual stream",
      DPT_FIELD(model.d_model), {}, must));
  t.push_back(option("n-layer", kModel, "transformer blocks L", DPT_FIELD(model.n_layer), {},
      must));
  t.push_back(option("n-head", kModel, "attention heads (must divide --d-model)",
      DPT_FIELD(model.n_head), {}, must));
  t.push_back(choice_option("attention", kModel,
      "'fused' (tiled, FlashAttention-2's algorithm: fused kernels on cuda for head sizes 32, "
      "64 and 128; keeps a log-sum-exp per row, not the T x T probabilities), 'unfused' (scores, "
      "softmax and weighted sum apart, the reference) or 'auto' (fused on cuda where the head "
      "size allows, unfused on cpu)", DPT_FIELD(model.attention), kAttentionImpls));
  // clang-format on
}

// Training: steps, batch and the optimizer.
void training_options(std::vector<OptionSpec>& t) {
  const auto must = OnResume::must_match;
  // clang-format off
  t.push_back(option("steps", kTraining, "optimizer steps", DPT_FIELD(steps),
      [](const TrainConfig& c) {
        require(c.steps > 0, "--steps must be positive, got " + num(c.steps) + ".");
      }));
  t.push_back(option("global-batch", kTraining,
      "sequences per optimizer step over all ranks (B)", DPT_FIELD(global_batch),
      [](const TrainConfig& c) {
        require(c.global_batch > 0,
                "--global-batch must be positive, got " + num(c.global_batch) + ".");
      }, must));
  t.push_back(option("micro-batch", kTraining,
      "sequences per rank per forward pass (b); B / (ranks x b) micro-batches are accumulated",
      DPT_FIELD(micro_batch), [](const TrainConfig& c) {
        require(c.micro_batch > 0,
                "--micro-batch must be positive, got " + num(c.micro_batch) + ".");
      }));
  t.push_back(option("lr", kTraining, "peak learning rate", DPT_FIELD(opt.lr),
      [](const TrainConfig& c) { require(c.opt.lr > 0, "--lr must be positive."); }));
  t.push_back(option("min-lr-ratio", kTraining, "cosine decay ends at lr x this ratio",
      DPT_FIELD(opt.min_lr_ratio), [](const TrainConfig& c) {
        require(c.opt.min_lr_ratio >= 0 && c.opt.min_lr_ratio <= 1,
                "--min-lr-ratio must be in [0, 1].");
      }));
  t.push_back(option("warmup-steps", kTraining, "linear warmup steps",
      DPT_FIELD(opt.warmup_steps), [](const TrainConfig& c) {
        require(c.opt.warmup_steps >= 0, "--warmup-steps must be >= 0.");
      }));
  t.push_back(option("weight-decay", kTraining,
      "AdamW decoupled weight decay (matrices and embeddings; not biases or LayerNorm)",
      DPT_FIELD(opt.weight_decay), [](const TrainConfig& c) {
        require(c.opt.weight_decay >= 0, "--weight-decay must be >= 0.");
      }));
  t.push_back(option("beta1", kTraining, "AdamW beta1", DPT_FIELD(opt.beta1),
      [](const TrainConfig& c) {
        require(c.opt.beta1 >= 0 && c.opt.beta1 < 1, "--beta1 must be in [0, 1).");
      }));
  t.push_back(option("beta2", kTraining, "AdamW beta2", DPT_FIELD(opt.beta2),
      [](const TrainConfig& c) {
        require(c.opt.beta2 >= 0 && c.opt.beta2 < 1, "--beta2 must be in [0, 1).");
      }));
  t.push_back(option("adam-eps", kTraining, "AdamW epsilon", DPT_FIELD(opt.eps),
      [](const TrainConfig& c) { require(c.opt.eps > 0, "--adam-eps must be positive."); }));
  t.push_back(option("grad-clip", kTraining, "clip the global gradient norm to this (0: off)",
      DPT_FIELD(opt.grad_clip), [](const TrainConfig& c) {
        require(c.opt.grad_clip >= 0, "--grad-clip must be >= 0 (0 turns clipping off).");
      }));
  t.push_back(option("bucket-mb", kTraining,
      "average gradients in buckets of this many MiB, each started during backward as soon as "
      "its gradients are final (the first bucket 1 MiB); 0: one exchange after backward",
      DPT_FIELD(bucket_mb), [](const TrainConfig& c) {
        require(c.bucket_mb >= 0 && c.bucket_mb <= 1024 * 1024,
                "--bucket-mb must be in [0, 1048576] MiB (0: one flat exchange after backward).");
      }));
  t.push_back(choice_option("zero", kTraining,
      "shard over the ranks: '1' the AdamW state (each rank updates the parameters it owns, "
      "then all gather them), '2' also the gradient (reduce-scattered every micro-batch), '0' "
      "nothing; 'auto': 1 with more than one rank on GPUs, else 0. Resume may change it",
      DPT_FIELD(zero), kZeroStages));
  // clang-format on
}

// Checkpoints, resume and the non-finite guard.
void checkpoint_options(std::vector<OptionSpec>& t) {
  const auto run_only = OnResume::run_only;
  // clang-format off
  t.push_back(option("ckpt-dir", kCheckpoints,
      "directory of checkpoints (step_NNNNNNNN/ each); none are written without it",
      DPT_FIELD(ckpt_dir)));
  t.push_back(option("ckpt-every", kCheckpoints,
      "save every N steps, and always after the last step (0: after the last step only)",
      DPT_FIELD(ckpt_every), [](const TrainConfig& c) {
        require(c.ckpt_every >= 0, "--ckpt-every must be >= 0 (0: only after the last step).");
      }));
  t.push_back(option("ckpt-keep", kCheckpoints,
      "keep the newest K checkpoints; older ones go once a newer one is published (0: all)",
      DPT_FIELD(ckpt_keep), [](const TrainConfig& c) {
        require(c.ckpt_keep >= 0, "--ckpt-keep must be >= 0 (0 keeps every checkpoint).");
      }));
  t.push_back(option("ckpt-async", kCheckpoints,
      "write checkpoints on a background thread while training continues (false: in the step)",
      DPT_FIELD(ckpt_async)));
  t.push_back(choice_option("ckpt-on-error", kCheckpoints,
      "when a save fails (disk full, I/O error): 'stop' the run, or 'continue' training and try "
      "again at the next save; either way the partial files go and the checkpoints already "
      "published stay. A failed save after the last step always ends the run with an error",
      DPT_FIELD(ckpt_on_error), kCkptOnError));
  t.push_back(resume_option());
  t.push_back(option("stop-at-step", kCheckpoints,
      "end after step K with a checkpoint, as a preempted job would; the learning-rate schedule "
      "still runs to --steps, and --resume auto continues (0: run to --steps)",
      DPT_FIELD(stop_at_step), [](const TrainConfig& c) {
        require(c.stop_at_step >= 0, "--stop-at-step must be >= 0 (0: run to --steps).");
      }, run_only));
  t.push_back(choice_option("nonfinite", kCheckpoints,
      "on a NaN or Inf loss or gradient norm: 'stop' the run, or 'skip' the update and go on",
      DPT_FIELD(nonfinite), kNonFinite));
  t.push_back(option("nonfinite-max-skips", kCheckpoints,
      "with --nonfinite skip: this many skipped steps in a row stop the run",
      DPT_FIELD(nonfinite_max_skips), [](const TrainConfig& c) {
        require(c.nonfinite_max_skips > 0, "--nonfinite-max-skips must be positive.");
      }));
  t.push_back(option("fault-nan-step", kCheckpoints,
      "testing: the last rank's gradient becomes NaN at this step (0: never)",
      DPT_FIELD(fault_nan_step), [](const TrainConfig& c) {
        require(c.fault_nan_step >= 0, "--fault-nan-step must be >= 0.");
      }, run_only));
  t.push_back(option("fault-kill-in-save", kCheckpoints,
      "testing: the last rank kills itself halfway through writing the checkpoint of this step "
      "(0: never)", DPT_FIELD(fault_kill_in_save), [](const TrainConfig& c) {
        require(c.fault_kill_in_save >= 0, "--fault-kill-in-save must be >= 0.");
      }, run_only));
  t.push_back(option("fault-skip-collective", kCheckpoints,
      "testing: the last rank skips the step votes' all-reduce of this step, so that the ranks "
      "disagree on the collectives they call (0: never)", DPT_FIELD(fault_skip_collective),
      [](const TrainConfig& c) {
        require(c.fault_skip_collective >= 0, "--fault-skip-collective must be >= 0.");
      }, run_only));
  // clang-format on
}

// Cluster jobs.
void job_options(std::vector<OptionSpec>& t) {
  // clang-format off
  t.push_back(preempt_signal_option());
  t.push_back(option("requeue-on-preempt", kJobs,
      "after a stop by --preempt-signal or --stop-before-limit, requeue the Slurm job (scontrol "
      "requeue); it continues with --resume auto", DPT_FIELD(requeue_on_preempt)));
  t.push_back(option("stop-before-limit", kJobs,
      "stop with a checkpoint this many seconds before the Slurm job's time limit (0: off)",
      DPT_FIELD(stop_before_limit_s), [](const TrainConfig& c) {
        require(c.stop_before_limit_s >= 0, "--stop-before-limit must be >= 0 seconds (0: off).");
      }));
  t.push_back(option("collective-timeout", kJobs,
      "seconds a collective may take before the job ends with a report of the ranks that are "
      "missing (stopped, hung, node lost) or that called other collectives, exit code 3 "
      "(0: no watchdog). Raise it where a rank may work alone for long, as in a first scan of "
      "a large dataset",
      DPT_FIELD(collective_timeout_s), [](const TrainConfig& c) {
        require(std::isfinite(c.collective_timeout_s) && c.collective_timeout_s >= 0,
                "--collective-timeout must be >= 0 seconds (0: no watchdog).");
      }, OnResume::run_only));
  // clang-format on
}

std::vector<OptionSpec> make_table() {
  std::vector<OptionSpec> t;
  general_options(t);
  data_options(t);
  model_options(t);
  training_options(t);
  checkpoint_options(t);
  job_options(t);
  for (OptionSpec& o : t) {
    if (o.on_resume == OnResume::must_match)
      o.help += " [fixed by a checkpoint: a resume keeps it]";
    if (o.on_resume == OnResume::run_only)
      o.help += " [this run only: not recorded in checkpoints]";
  }
  return t;
}

#undef DPT_FIELD

// ---- Boost.program_options front end ----------------------------------------------------------

po::options_description describe_options(bool* has_help, std::string* config_file) {
  po::options_description all(
      "train: data-parallel training of a GPT-style model\n\n"
      "Usage: mpiexec -n RANKS train --data SHARDS [options]");
  std::vector<std::pair<std::string, po::options_description>> groups;
  auto group = [&](const char* name) -> po::options_description& {
    for (auto& g : groups)
      if (g.first == name) return g.second;
    groups.emplace_back(name, po::options_description(name));
    return groups.back().second;
  };
  group(kGeneral).add_options()("help,h", po::bool_switch(has_help), "print this help and exit")(
      "config", po::value<std::string>(config_file),
      "INI-style file with the options below as 'name = value' lines (the command line wins)");
  for (const OptionSpec& o : train_options()) {
    auto* v = po::value<std::string>();
    if (!o.default_text.empty()) v->default_value(o.default_text);
    if (o.is_switch) v->implicit_value("true");
    group(o.group).add_options()(o.name, v, o.help.c_str());
  }
  for (auto& g : groups)
    all.add(g.second);
  return all;
}

// Applies every option the variables map holds a given (not defaulted) value for, in table
// order, then what follows from them.
void apply_options(const po::variables_map& vm, TrainConfig& c) {
  for (const OptionSpec& o : train_options()) {
    const auto it = vm.find(o.name);
    if (it == vm.end() || it->second.defaulted()) continue;
    o.parse(c, it->second.as<std::string>());
  }
  c.opt.total_steps = c.steps;
}

}  // namespace

const std::vector<OptionSpec>& train_options() {
  static const std::vector<OptionSpec> table = make_table();
  return table;
}

ParsedOptions parse_train_options(int argc, const char* const* argv) {
  ParsedOptions out;
  bool help = false;
  std::string config_file;
  const po::options_description all = describe_options(&help, &config_file);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).run(), vm);
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream in(path);
      if (!in) throw UsageError("--config " + path + ": cannot open the file; check the path.");
      // Values already stored from the command line are kept: the command line wins.
      po::store(po::parse_config_file(in, all, /*allow_unregistered=*/false), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    const std::string where = vm.count("config") ? " (command line or --config file)" : "";
    throw UsageError(std::string(e.what()) + where + ". Run 'train --help' for the options.");
  }
  std::ostringstream text;
  text << all;
  out.help_text = text.str();
  out.help = help;
  if (help) return out;  // the values are not read: --help prints help whatever else is given
  try {
    apply_options(vm, out.config);
  } catch (const UsageError& e) {
    if (config_file.empty()) throw;
    throw UsageError(std::string(e.what()) + " (from the command line or --config " + config_file +
                     ")");
  }
  return out;
}

void check_options(const TrainConfig& cfg) {
  for (const OptionSpec& o : train_options())
    if (o.check) o.check(cfg);
}

std::string to_config_text(const TrainConfig& cfg) {
  std::string s = "# Options of the run (train --config reads this file)\n";
  for (const OptionSpec& o : train_options()) {
    if (o.on_resume == OnResume::run_only) continue;
    const std::string v = o.print(cfg);
    if (!v.empty()) s += std::string(o.name) + " = " + v + "\n";
  }
  return s;
}

namespace {

// The values a config text gives, by option name; names this build does not know are left out.
std::map<std::string, std::string> config_values(const std::string& text) {
  bool help = false;
  std::string config_file;
  const po::options_description all = describe_options(&help, &config_file);
  std::istringstream in(text);
  std::map<std::string, std::string> values;
  try {
    for (const po::option& o : po::parse_config_file(in, all, /*allow_unregistered=*/true).options)
      if (!o.unregistered && !o.value.empty()) values[o.string_key] = o.value.front();
  } catch (const po::error& e) {
    throw UsageError(std::string("the recorded options: ") + e.what());
  }
  return values;
}

}  // namespace

TrainConfig parse_config_text(const std::string& text) {
  const auto values = config_values(text);
  TrainConfig c;
  for (const OptionSpec& o : train_options()) {
    const auto it = values.find(o.name);
    if (it != values.end()) o.parse(c, it->second);
  }
  c.opt.total_steps = c.steps;
  return c;
}

void check_resume_options(const std::string& recorded, const TrainConfig& now) {
  const auto values = config_values(recorded);
  for (const OptionSpec& o : train_options()) {
    if (o.on_resume != OnResume::must_match) continue;
    // Not recorded: nothing to compare; the checkpoint's tensors and data are still checked.
    const auto it = values.find(o.name);
    if (it == values.end()) continue;
    TrainConfig saved;
    o.parse(saved, it->second);
    const std::string was = o.print(saved), is = o.print(now);
    if (was == is) continue;
    const std::string opt = "--" + std::string(o.name);
    throw UsageError(opt + " " + is + " contradicts the checkpoint, which was trained with " + opt +
                     " " + was + ": pass " + opt + " " + was +
                     " to continue it, or start a new run in another --ckpt-dir");
  }
}

}  // namespace dpt::trainer
