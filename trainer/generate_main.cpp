// generate: text from a language-model checkpoint, one token at a time over the key/value cache
// of [Decoder], sampled as [Sampling] says. The prompt and the text go to stdout as they come;
// progress, rate and the summary to stderr.
//
// Tokens are prepare-data's byte-level ids (docs/data-format.md): 0..255 are bytes and 256 ends
// a text; every document starts with it, so the prompt does too. --prompt-ids passes and prints
// raw ids for checkpoints trained on another tokenizer.
#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/errors.h"
#include "kernels/cuda_device.h"
#include "trainer/decoder.h"
#include "trainer/metrics.h"
#include "trainer/model_file.h"
#include "trainer/sampling.h"
#include "trainer/tool_cli.h"

namespace {

using namespace dpt;
using namespace dpt::trainer;
namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

constexpr int32_t kEndOfText = 256;  // prepare-data's byte-level tokenizer
constexpr int kByteVocab = 257;

struct Options {
  std::string ckpt;
  std::string prompt;
  std::string prompt_ids;
  int max_tokens = 200;
  std::string device = "auto", dtype = "auto";
  SamplingConfig sampling;
  bool ignore_eot = false;
};

std::optional<Options> parse(int argc, char** argv) {
  Options o;
  // clang-format off
  po::options_description desc(
      "generate: text from a language-model checkpoint (bin/train --task lm)\n\n"
      "Usage: generate CKPT [--prompt TEXT] [options]\n"
      "  CKPT is a checkpoint (CKPT_DIR/step_*) or a run's --ckpt-dir (its latest)\n\nOptions");
  desc.add_options()
      ("help,h", "print this help and exit")
      ("prompt", po::value(&o.prompt)->default_value(""),
       "text to continue (byte-level tokens, after an end-of-text token)")
      ("prompt-ids", po::value(&o.prompt_ids),
       "comma-separated token ids instead of --prompt (any tokenizer); the output is ids too")
      ("max-tokens", po::value(&o.max_tokens)->default_value(o.max_tokens),
       "tokens to generate at most")
      ("temperature", po::value(&o.sampling.temperature)->default_value(1.0, "1"),
       "softmax temperature (0: greedy)")
      ("top-k", po::value(&o.sampling.top_k)->default_value(0), "sample among the k most likely (0: all)")
      ("top-p", po::value(&o.sampling.top_p)->default_value(1.0, "1"),
       "sample among the most likely tokens holding this much probability (1: all)")
      ("seed", po::value(&o.sampling.seed)->default_value(1), "the same seed gives the same text")
      ("device", po::value(&o.device)->default_value(o.device),
       "cpu, cuda (the first visible GPU) or auto (cuda when there is one)")
      ("dtype", po::value(&o.dtype)->default_value(o.dtype),
       "fp32, bf16 (cuda only) or auto (bf16 on cuda, fp32 on cpu)")
      ("ignore-eot", po::bool_switch(&o.ignore_eot),
       "go on past an end-of-text token instead of stopping there");
  // clang-format on
  po::variables_map vm;
  if (!parse_tool_command_line("generate", argc, argv, desc, &o.ckpt, &vm)) return std::nullopt;
  if (o.max_tokens < 1) throw UsageError("--max-tokens must be positive");
  if (!o.prompt.empty() && vm.count("prompt-ids"))
    throw UsageError("pass --prompt or --prompt-ids, not both");
  o.sampling.validate();
  if (o.device != "cpu" && o.device != "cuda" && o.device != "auto")
    throw UsageError("--device " + o.device + " is not one of cpu, cuda, auto");
  if (o.dtype != "fp32" && o.dtype != "bf16" && o.dtype != "auto")
    throw UsageError("--dtype " + o.dtype + " is not one of fp32, bf16, auto");
  return o;
}

std::vector<int32_t> parse_ids(const std::string& text, int vocab) {
  const auto ids = parse_int_list(text, vocab, "--prompt-ids", "a token id");
  return std::vector<int32_t>(ids.begin(), ids.end());
}

int run(int argc, char** argv) {
  const auto parsed = parse(argc, argv);
  if (!parsed) return 0;
  const Options& o = *parsed;
  const CheckpointModel m = load_checkpoint_model(o.ckpt);
  const ModelConfig& cfg = m.config.model;
  if (cfg.task != Task::lm)
    throw UsageError(m.step_dir + " holds a " + task_name(cfg.task) +
                     " model: generation needs a language model (--task lm); bin/attention "
                     "looks inside the others");
  check_layout_matches(cfg, m);
  const bool bytes = o.prompt_ids.empty();
  if (bytes && cfg.vocab_size < kByteVocab)
    throw UsageError("the model's vocabulary has " + std::to_string(cfg.vocab_size) +
                     " tokens, not prepare-data's 257 byte-level ones: pass --prompt-ids");
  std::vector<int32_t> context;
  if (bytes) {
    context.push_back(kEndOfText);
    for (unsigned char c : o.prompt)
      context.push_back(c);
  } else {
    context = parse_ids(o.prompt_ids, cfg.vocab_size);
  }
  // --device auto: a GPU when this build has CUDA and one is visible.
  const bool cuda = o.device == "cuda" || (o.device == "auto" && kernels::cuda_built() &&
                                           kernels::cuda_device_count() > 0);
  const Precision precision = o.dtype == "fp32"   ? Precision::fp32
                              : o.dtype == "bf16" ? Precision::bf16
                                                  : (cuda ? Precision::bf16 : Precision::fp32);
  if (!cuda && precision == Precision::bf16)
    throw UsageError("--dtype bf16 needs --device cuda: the CPU decoder computes in fp32");
  const std::unique_ptr<TokenDecoder> decoder_owner =
      cuda ? make_cuda_decoder(cfg, m.params, 0, precision) : make_cpu_decoder(cfg, m.params);
  TokenDecoder& decoder = *decoder_owner;
  Sampler sampler(o.sampling);
  const int T = decoder.capacity();
  auto emit = [&](int32_t id) {
    if (bytes) {
      if (id < 256) std::fputc(id, stdout);
    } else {
      std::printf("%d,", id);
    }
    std::fflush(stdout);
  };
  // The prompt (its last T tokens when longer than the context).
  if (static_cast<int>(context.size()) > T) context.erase(context.begin(), context.end() - T);
  for (size_t i = bytes ? 1 : 0; i < context.size(); ++i)
    emit(context[i]);
  const size_t prompt_tokens = context.size();
  const auto t0 = Clock::now();
  std::span<const float> logits;
  for (int32_t id : context)
    logits = decoder.step(id);
  const double prefill_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto t1 = Clock::now();
  auto last_report = t1;
  int generated = 0, slides = 0;
  bool ended = false;
  for (; generated < o.max_tokens; ++generated) {
    const int32_t next = sampler.next(logits, static_cast<uint64_t>(generated));
    if (bytes && next == kEndOfText && !o.ignore_eot) {
      ended = true;
      break;
    }
    emit(next);
    context.push_back(next);
    if (decoder.position() == T) {
      // The context is full: keep its newest half and rebuild the cache from it.
      context.erase(context.begin(), context.end() - T / 2);
      decoder.reset();
      for (size_t i = 0; i + 1 < context.size(); ++i)
        decoder.step(context[i]);
      ++slides;
    }
    logits = decoder.step(next);
    const auto now = Clock::now();
    if (std::chrono::duration<double>(now - last_report).count() >= 2.0) {
      last_report = now;
      const double s = std::chrono::duration<double>(now - t1).count();
      const double rate = (generated + 1) / s;
      std::fprintf(stderr, "\n[generate: %d/%d tokens, %.1f tok/s, ETA %s]\n", generated + 1,
                   o.max_tokens, rate,
                   format_duration((o.max_tokens - generated - 1) / rate).c_str());
    }
  }
  const double s = std::chrono::duration<double>(Clock::now() - t1).count();
  std::printf("\n");
  std::fflush(stdout);
  std::fprintf(stderr,
               "generate: %s (step %lld) on %s: %zu prompt tokens in %.3f s, %d generated in "
               "%.3f s (%.1f tok/s, key/value cache)%s%s\n",
               m.step_dir.c_str(), static_cast<long long>(m.step), decoder.describe().c_str(),
               prompt_tokens, prefill_s, generated, s, s > 0 ? generated / s : 0.0,
               ended ? ", stopped at end-of-text" : "",
               slides ? (", context slid " + std::to_string(slides) + " time(s)").c_str() : "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (...) {
    return dpt::report_exception("generate");
  }
}
