// Boost.program_options front end of the train executable.
#include "trainer/train_config.h"

#include <boost/program_options.hpp>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/errors.h"
#include "trainer/stop_request.h"

namespace dpt::trainer {

namespace po = boost::program_options;

namespace {
template <typename V>
po::typed_value<V>* val(V* target) {
  return po::value<V>(target)->default_value(*target);
}
}  // namespace

ParsedOptions parse_train_options(int argc, const char* const* argv) {
  ParsedOptions out;
  TrainConfig& c = out.config;
  std::string config_file;
  std::string seed_text;
  int vocab_size = 0;

  // One option per line reads better than clang-format's packing of Boost's chained calls.
  // clang-format off
  po::options_description general("General");
  general.add_options()
      ("help,h", "print this help and exit")
      ("config", po::value<std::string>(&config_file),
       "INI-style file with the options below as 'name = value' lines (the command line wins)")
      ("data", po::value<std::string>(&c.data),
       "training shards: a directory of *.h5, a quoted glob, or one file (docs/data-format.md)")
      ("metrics", po::value<std::string>(&c.metrics),
       "write one JSON object per optimizer step to this file (rank 0)")
      ("seed", po::value<std::string>(&seed_text)->default_value(std::to_string(c.seed)),
       "seed of initialization and sample order (an integer in [0, 2^64))")
      ("threads", val(&c.threads),
       "CPU threads per rank (0: OMP_NUM_THREADS, else the CPUs the rank is bound to, "
       "else the node's cores / ranks on the node)")
      ("log-every", val(&c.log_every), "print a progress line every N steps")
      ("check-sync-every", val(&c.check_sync_every),
       "compare parameter hashes across ranks every N steps (0: at start and end only)")
      ("device", val(&c.device),
       "'cpu', 'cuda' or 'auto' (cuda when this build has CUDA and every rank has a GPU of "
       "its own, else cpu)")
      ("dtype", val(&c.dtype),
       "compute precision: 'fp32', 'bf16' (bf16 activations and matrix products, fp32 master "
       "weights, gradients and AdamW state; --device cuda only) or 'auto' (bf16 on cuda, fp32 "
       "on cpu)");

  po::options_description data("Data");
  data.add_options()
      ("val-data", po::value<std::string>(&c.val_data),
       "held-out shards for the validation loss (same forms as --data)")
      ("val-every", val(&c.val_every),
       "validation loss every N steps and after the last (0: after the last only)")
      ("val-samples", val(&c.val_samples),
       "held-out samples evaluated each time (evenly spaced over --val-data, fixed for the run)")
      ("shuffle", val(&c.shuffle),
       "sample order: 'full' (a permutation of all samples per epoch) or 'local' (shards "
       "shuffled, then samples within windows of --shuffle-window shards; reads stay local)")
      ("shuffle-window", val(&c.shuffle_window), "shards per window of --shuffle local")
      ("prefetch", val(&c.prefetch), "micro-batches the I/O thread reads ahead")
      ("data-cache-mb", val(&c.data_cache_mb), "HDF5 chunk-cache budget of the reader, MiB")
      ("index-cache", val(&c.index_cache),
       "directory for shard indexes (default: a .dptrain-index file beside the shards)");

  po::options_description model("Model");
  model.add_options()
      ("vocab-size", po::value<int>(&vocab_size), "vocabulary size (default: from the data)")
      ("seq-len", val(&c.model.seq_len), "context length T")
      ("d-model", val(&c.model.d_model), "width C of the residual stream")
      ("n-layer", val(&c.model.n_layer), "transformer blocks L")
      ("n-head", val(&c.model.n_head), "attention heads (must divide --d-model)");

  po::options_description train("Training");
  train.add_options()
      ("steps", val(&c.steps), "optimizer steps")
      ("global-batch", val(&c.global_batch), "sequences per optimizer step over all ranks (B)")
      ("micro-batch", val(&c.micro_batch),
       "sequences per rank per forward pass (b); B / (ranks x b) micro-batches are accumulated")
      ("lr", val(&c.opt.lr), "peak learning rate")
      ("min-lr-ratio", val(&c.opt.min_lr_ratio), "cosine decay ends at lr x this ratio")
      ("warmup-steps", val(&c.opt.warmup_steps), "linear warmup steps")
      ("weight-decay", val(&c.opt.weight_decay),
       "AdamW decoupled weight decay (matrices and embeddings; not biases or LayerNorm)")
      ("beta1", val(&c.opt.beta1), "AdamW beta1")
      ("beta2", val(&c.opt.beta2), "AdamW beta2")
      ("adam-eps", val(&c.opt.eps), "AdamW epsilon")
      ("grad-clip", val(&c.opt.grad_clip), "clip the global gradient norm to this (0: off)");

  po::options_description ckpt("Checkpoints (docs/checkpoints.md)");
  ckpt.add_options()
      ("ckpt-dir", val(&c.ckpt_dir),
       "directory of checkpoints (step_NNNNNNNN/ each); none are written without it")
      ("ckpt-every", val(&c.ckpt_every),
       "save every N steps, and always after the last step (0: after the last step only)")
      ("ckpt-keep", val(&c.ckpt_keep),
       "keep the newest K checkpoints; older ones go once a newer one is published (0: all)")
      ("ckpt-async", val(&c.ckpt_async),
       "write checkpoints on a background thread while training continues (false: in the step)")
      ("resume", val(&c.resume),
       "'auto': continue from the newest valid checkpoint in --ckpt-dir, else start fresh; "
       "'never': start fresh (refused if --ckpt-dir holds checkpoints); or the PATH of one "
       "checkpoint directory")
      ("stop-at-step", val(&c.stop_at_step),
       "end after step K with a checkpoint, as a preempted job would; the learning-rate "
       "schedule still runs to --steps, and --resume auto continues (0: run to --steps)")
      ("nonfinite", val(&c.nonfinite),
       "on a NaN or Inf loss or gradient norm: 'stop' the run, or 'skip' the update and go on")
      ("nonfinite-max-skips", val(&c.nonfinite_max_skips),
       "with --nonfinite skip: this many skipped steps in a row stop the run")
      ("fault-nan-step", val(&c.fault_nan_step),
       "testing: the last rank's gradient becomes NaN at this step (0: never)")
      ("fault-kill-in-save", val(&c.fault_kill_in_save),
       "testing: the last rank kills itself halfway through writing the checkpoint of this "
       "step (0: never)");

  po::options_description job("Cluster jobs (docs/slurm.md)");
  job.add_options()
      ("preempt-signal", val(&c.preempt_signal),
       "signal that asks for a checkpoint and a stop, e.g. from '#SBATCH --signal=USR2@120' "
       "(USR1, USR2, INT, HUP, ALRM, or 'none'); SIGTERM always does the same, without requeue")
      ("requeue-on-preempt", val(&c.requeue_on_preempt),
       "after a stop by --preempt-signal or --stop-before-limit, requeue the Slurm job "
       "(scontrol requeue); it continues with --resume auto")
      ("stop-before-limit", val(&c.stop_before_limit),
       "stop with a checkpoint this many seconds before the Slurm job's time limit (0: off)");

  // clang-format on
  po::options_description all(
      "train: data-parallel training of a GPT-style model\n\n"
      "Usage: mpiexec -n RANKS train --data SHARDS [options]");
  all.add(general).add(data).add(model).add(train).add(ckpt).add(job);

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).run(), vm);
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream in(path);
      if (!in) {
        throw UsageError("--config " + path + ": cannot open the file; check the path.");
      }
      // Values already stored from the command line are kept: the command line wins.
      po::store(po::parse_config_file(in, all, /*allow_unregistered=*/false), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::string where = vm.count("config") ? " (command line or --config file)" : "";
    throw UsageError(std::string(e.what()) + where + ". Run 'train --help' for the options.");
  }

  std::ostringstream help;
  help << all;
  out.help_text = help.str();
  out.help = vm.count("help") > 0;
  if (vm.count("vocab-size")) {
    c.model.vocab_size = vocab_size;
    c.vocab_from_data = false;
  }
  // Parsed by hand: lexical_cast would take "-1" as 2^64 - 1 for an unsigned type.
  const bool digits = !seed_text.empty() && seed_text.size() <= 20 &&
                      seed_text.find_first_not_of("0123456789") == std::string::npos;
  errno = 0;
  const unsigned long long seed = digits ? std::strtoull(seed_text.c_str(), nullptr, 10) : 0;
  if (!digits || errno == ERANGE) {
    throw UsageError("--seed " + seed_text +
                     " is not an integer in [0, 2^64): pass e.g. --seed 42.");
  }
  c.seed = seed;
  c.opt.total_steps = c.steps;
  return out;
}

void TrainConfig::validate(int world_size) const {
  auto require = [](bool ok, const std::string& msg) {
    if (!ok) throw UsageError(msg);
  };
  require(!data.empty(),
          "no training data: pass --data SHARDS (a directory of *.h5 shards, a glob, or one "
          "shard; bin/prepare-data makes them from text).");
  require(shuffle == "full" || shuffle == "local",
          "--shuffle must be 'full' or 'local', got '" + shuffle + "'.");
  require(shuffle_window > 0, "--shuffle-window must be positive (shards per window).");
  require(prefetch > 0, "--prefetch must be positive (micro-batches read ahead).");
  require(data_cache_mb >= 0, "--data-cache-mb must be >= 0.");
  require(val_every >= 0, "--val-every must be >= 0 (0: after the last step only).");
  require(val_samples > 0, "--val-samples must be positive.");
  model.validate();
  require(steps > 0, "--steps must be positive, got " + std::to_string(steps) + ".");
  require(micro_batch > 0,
          "--micro-batch must be positive, got " + std::to_string(micro_batch) + ".");
  require(global_batch > 0,
          "--global-batch must be positive, got " + std::to_string(global_batch) + ".");
  const int64_t per_pass = int64_t{world_size} * micro_batch;
  if (global_batch % per_pass != 0) {
    const int64_t lower = (global_batch / per_pass) * per_pass;
    const int64_t upper = lower + per_pass;
    std::string choices =
        lower > 0 ? std::to_string(lower) + " or " + std::to_string(upper) : std::to_string(upper);
    throw UsageError("--global-batch " + std::to_string(global_batch) +
                     " is not divisible by ranks x --micro-batch = " + std::to_string(world_size) +
                     " x " + std::to_string(micro_batch) + " = " + std::to_string(per_pass) +
                     ": set --global-batch to a multiple of " + std::to_string(per_pass) + " (" +
                     choices + "), or change --micro-batch or the number of ranks.");
  }
  require(opt.lr > 0, "--lr must be positive.");
  require(opt.min_lr_ratio >= 0 && opt.min_lr_ratio <= 1, "--min-lr-ratio must be in [0, 1].");
  require(opt.warmup_steps >= 0, "--warmup-steps must be >= 0.");
  require(opt.weight_decay >= 0, "--weight-decay must be >= 0.");
  require(opt.grad_clip >= 0, "--grad-clip must be >= 0 (0 turns clipping off).");
  require(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1,
          "--beta1 and --beta2 must be in [0, 1).");
  require(opt.eps > 0, "--adam-eps must be positive.");
  require(threads >= 0, "--threads must be >= 0 (0 picks a default; see --help).");
  require(log_every > 0, "--log-every must be positive.");
  require(check_sync_every >= 0, "--check-sync-every must be >= 0.");
  require(ckpt_every >= 0, "--ckpt-every must be >= 0 (0: only after the last step).");
  require(ckpt_keep >= 0, "--ckpt-keep must be >= 0 (0 keeps every checkpoint).");
  require(!resume.empty(), "--resume must be 'auto', 'never' or the path of a checkpoint.");
  require(nonfinite == "stop" || nonfinite == "skip",
          "--nonfinite must be 'stop' or 'skip', got '" + nonfinite + "'.");
  require(nonfinite_max_skips > 0, "--nonfinite-max-skips must be positive.");
  require(fault_nan_step >= 0 && fault_kill_in_save >= 0,
          "--fault-nan-step and --fault-kill-in-save must be >= 0.");
  require(stop_at_step >= 0, "--stop-at-step must be >= 0 (0: run to --steps).");
  require(device == "cpu" || device == "cuda" || device == "auto",
          "--device must be 'cpu', 'cuda' or 'auto', got '" + device + "'.");
  require(dtype == "fp32" || dtype == "bf16" || dtype == "auto",
          "--dtype must be 'fp32', 'bf16' or 'auto', got '" + dtype + "'.");
  require(!(device == "cpu" && dtype == "bf16"),
          "--dtype bf16 needs --device cuda: the CPU path computes in fp32. Pass --dtype fp32 "
          "(or auto), or --device cuda.");
  (void)signal_number(preempt_signal);  // throws UsageError naming the accepted names
  require(stop_before_limit >= 0, "--stop-before-limit must be >= 0 seconds (0: off).");
}

std::string TrainConfig::to_config_file() const {
  std::ostringstream s;
  s.precision(17);
  auto line = [&](const char* name, const auto& value) { s << name << " = " << value << "\n"; };
  auto text = [&](const char* name, const std::string& value) {
    if (!value.empty()) line(name, value);
  };
  s << "# Options of the run (train --config reads this file)\n";
  text("data", data);
  text("val-data", val_data);
  line("val-every", val_every);
  line("val-samples", val_samples);
  line("shuffle", shuffle);
  line("shuffle-window", shuffle_window);
  line("prefetch", prefetch);
  line("data-cache-mb", data_cache_mb);
  text("index-cache", index_cache);
  line("vocab-size", model.vocab_size);
  line("seq-len", model.seq_len);
  line("d-model", model.d_model);
  line("n-layer", model.n_layer);
  line("n-head", model.n_head);
  line("steps", steps);
  line("global-batch", global_batch);
  line("micro-batch", micro_batch);
  line("lr", opt.lr);
  line("min-lr-ratio", opt.min_lr_ratio);
  line("warmup-steps", opt.warmup_steps);
  line("weight-decay", opt.weight_decay);
  line("beta1", opt.beta1);
  line("beta2", opt.beta2);
  line("adam-eps", opt.eps);
  line("grad-clip", opt.grad_clip);
  line("seed", seed);
  line("threads", threads);
  text("metrics", metrics);
  line("log-every", log_every);
  line("check-sync-every", check_sync_every);
  text("ckpt-dir", ckpt_dir);
  line("ckpt-every", ckpt_every);
  line("ckpt-keep", ckpt_keep);
  line("ckpt-async", ckpt_async ? "true" : "false");
  line("resume", resume);
  line("nonfinite", nonfinite);
  line("nonfinite-max-skips", nonfinite_max_skips);
  line("device", device);
  line("dtype", dtype);
  line("preempt-signal", preempt_signal);
  line("requeue-on-preempt", requeue_on_preempt ? "true" : "false");
  line("stop-before-limit", stop_before_limit);
  return s.str();
}

}  // namespace dpt::trainer
