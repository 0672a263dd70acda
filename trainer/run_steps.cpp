// The steps of a run of bin/train ([Agreed failure] around everything that can fail on one rank).
#include "trainer/run_steps.h"

#include <chrono>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <numeric>
#include <span>
#include <thread>

#include "comm/agreement.h"
#include "comm/nccl_info.h"
#include "comm/typed_collectives.h"
#include "datasets/shard_reader.h"
#include "datasets/shard_set.h"
#include "job/cpu_placement.h"
#include "job/nodes.h"
#include "job/requeue.h"
#include "kernels/cpu_threads.h"
#include "kernels/cuda_device.h"
#include "trainer/checkpoint_meta.h"
#include "trainer/param_layout.h"
#include "trainer/peak_flops.h"
#include "trainer/train_options.h"

namespace dpt::trainer {

using comm::run_agreed;

void RunLog::say(const std::string& line) const {
  if (rank_ != 0) return;
  std::printf("train: %s\n", line.c_str());
  std::fflush(stdout);
}

// ---- parse --------------------------------------------------------------------------------------

std::optional<TrainConfig> parse_run(comm::Communicator& world, int argc, const char* const* argv) {
  ParsedOptions opts;
  run_agreed(world, [&] { opts = parse_train_options(argc, argv); });
  if (opts.help) {
    if (world.rank() == 0) std::printf("%s\n", opts.help_text.c_str());
    return std::nullopt;
  }
  run_agreed(world, [&] { opts.config.validate(world.world_size()); });
  return opts.config;
}

// ---- place --------------------------------------------------------------------------------------

namespace {

// The denominator of mfu: --peak-tflops, else the GPU's dense peak from the table, else the
// ranks' mean rate of a short fp32 GEMM (collective: every rank measures at once, as it will
// train, sharing the node's cores and memory bandwidth).
double peak_flops_for_mfu(comm::Communicator& world, const TrainConfig& cfg, const RunPlacement& p,
                          const RunLog& log) {
  char line[256];
  if (cfg.peak_tflops > 0) {
    std::snprintf(line, sizeof(line), "mfu: against %.4g TFLOP/s per rank (--peak-tflops)",
                  cfg.peak_tflops);
    log.say(line);
    return cfg.peak_tflops * 1e12;
  }
  if (p.device.device == job::Device::cuda) {
    const std::string name = kernels::cuda_device_name(p.device.gpu);
    const double peak = gpu_peak_flops(name, p.precision);
    if (peak > 0) {
      std::snprintf(line, sizeof(line), "mfu: against %.4g TFLOP/s per rank (%s dense %s peak)",
                    peak / 1e12, name.c_str(), precision_name(p.precision));
    } else {
      std::snprintf(line, sizeof(line),
                    "mfu: unknown (no peak for %s in the table); pass --peak-tflops", name.c_str());
    }
    log.say(line);
    return peak;
  }
  double peak = measure_cpu_peak_flops();
  world.all_reduce(std::span<double>(&peak, 1), comm::ReduceOp::avg);
  std::snprintf(line, sizeof(line),
                "mfu: against %.4g GFLOP/s per rank (fp32 GEMM 512^3 measured on %d thread%s, "
                "mean of the ranks)",
                peak / 1e9, p.threads, p.threads == 1 ? "" : "s");
  log.say(line);
  return peak;
}

}  // namespace

RunPlacement place_run(comm::Communicator& world, const comm::Placement& where,
                       const TrainConfig& cfg, job::StopRequests& stop, const RunLog& log) {
  RunPlacement p;
  p.slurm = job::SlurmEnv::from_environment();
  std::string local_how, nodes;
  run_agreed(world, [&] {
    local_how = job::check_slurm_placement(world, where, p.slurm);
    nodes = job::describe_nodes(world, where);
    p.device = job::choose_device(cfg.device, world, where);
  });
  if (p.slurm.in_job()) {
    log.say("slurm: job " + p.slurm.job_id +
            (p.slurm.array_job_id.empty() ? "" : " (array task " + p.slurm.requeue_id() + ")") +
            ", restart " + std::to_string(p.slurm.restart_count) + ", nodes " + p.slurm.nodelist);
  }
  log.say("placement: " + nodes + " | local rank: " + local_how);
  log.say(p.device.summary);
  // --dtype auto: bf16 on GPUs (fp32 master weights and optimizer state), fp32 on the CPU.
  const bool cuda = p.device.device == job::Device::cuda;
  p.precision =
      cfg.dtype != Precision::automatic ? cfg.dtype : (cuda ? Precision::bf16 : Precision::fp32);
  if (p.precision == Precision::bf16 && !cuda) {
    run_agreed(world, [&] {
      throw UsageError(std::string("--dtype bf16 needs the GPU path, but --device ") +
                       job::device_name(cfg.device) + " chose the CPU (" +
                       (p.device.summary.empty() ? "see rank 0" : p.device.summary) +
                       "). Pass --dtype fp32 or auto, or run where every rank has a GPU.");
    });
  }
  // [ZeRO] --zero auto: shard the optimizer state where memory is scarce and the exchange is
  // NCCL's (more than one rank on GPUs); the CPU path keeps round one's exchange.
  const bool nccl = !comm::nccl_version().empty();
  const bool sharding_pays = cuda && world.world_size() > 1 && nccl;
  p.zero = cfg.zero != ZeroStage::automatic
               ? cfg.zero
               : (sharding_pays ? ZeroStage::optimizer : ZeroStage::off);
  const char* why = !cuda                     ? "CPU ranks; pass --zero 1 or 2 to shard"
                    : world.world_size() == 1 ? "one rank"
                    : !nccl                   ? "GPUs without NCCL in this build"
                                              : "more than one rank on GPUs";
  log.say("zero: " + describe_zero(p.zero) +
          (cfg.zero != ZeroStage::automatic ? std::string(" (--zero)")
                                            : std::string(" (--zero auto: ") + why + ")"));
  if (cuda && p.zero == ZeroStage::gradients)
    run_agreed(world, [&] { throw UsageError(kZero2CpuOnly); });
  if (cuda && p.zero == ZeroStage::optimizer && !nccl) {
    run_agreed(world, [&] {
      throw UsageError(
          "--zero 1 on GPUs needs NCCL, which this build lacks (its gradients go through host "
          "memory): pass --zero 0, or rebuild with NCCL");
    });
  }
  if (cfg.stop_before_limit_s > 0 && world.rank() == 0) {
    if (p.slurm.in_job()) {
      stop.watch_time_limit(p.slurm.job_id, cfg.stop_before_limit_s, log.sayer());
    } else {
      log.say(
          "warning: --stop-before-limit: not in a Slurm job (no SLURM_JOB_ID), so there is "
          "no time limit to watch");
    }
  }
  p.threads = cfg.threads > 0 ? cfg.threads : job::default_cpu_threads(where.local_size);
  kernels::set_cpu_threads(p.threads);
  p.peak_flops = peak_flops_for_mfu(world, cfg, p, log);
  return p;
}

// ---- open the data ------------------------------------------------------------------------------

RunData::RunData(comm::Communicator& world, storage::IoThread& io, TrainConfig& cfg) {
  if (names_sample_shards(world, cfg.data, "--data")) {
    open_samples(world, io, cfg);
  } else {
    open_tokens(world, io, cfg);
  }
  run_agreed(world, [&] { cfg.model.validate(); });
}

TrainData RunData::view() {
  if (samples()) return TrainData{*train_set, val_set ? &*val_set : nullptr};
  return TrainData{*train, val ? &*val : nullptr};
}

DataFingerprint RunData::fingerprint() const {
  return samples() ? data_fingerprint(train_samples->shards) : data_fingerprint(train_index.shards);
}

void RunData::open_tokens(comm::Communicator& world, storage::IoThread& io, TrainConfig& cfg) {
  if (!cfg.task_from_data && cfg.model.task != Task::lm) {
    run_agreed(world, [&] {
      throw UsageError(std::string("--task ") + task_name(cfg.model.task) + ", but --data " +
                       cfg.data +
                       " holds token shards, which train language models: pass --task lm, or "
                       "point --data at sample shards with /labels or /targets "
                       "(docs/data-format.md)");
    });
  }
  cfg.model.task = Task::lm;
  if (cfg.model.patch != 0) {
    run_agreed(world, [&] {
      throw UsageError("--patch " + std::to_string(cfg.model.patch) + " cuts images, but --data " +
                       cfg.data + " holds token shards: leave --patch out");
    });
  }
  train_index = index_shards(world, io, cfg.data, "--data", cfg.index_cache);
  if (!cfg.val_data.empty())
    val_index = index_shards(world, io, cfg.val_data, "--val-data", cfg.index_cache);
  run_agreed(world, [&] {
    if (cfg.vocab_from_data) cfg.model.vocab_size = static_cast<int>(train_index.vocab_size);
    datasets::check_shards_fit(train_index.shards, cfg.model.seq_len, cfg.model.vocab_size,
                               "--data");
    if (val_index) {
      datasets::check_shards_fit(val_index->shards, cfg.model.seq_len, cfg.model.vocab_size,
                                 "--val-data");
    }
  });
  const size_t cache_bytes = static_cast<size_t>(cfg.data_cache_mb) << 20;
  train.emplace(io, train_index.shards, cfg.model.seq_len,
                datasets::plan_reader(train_index.shards, cfg.shuffle, cache_bytes,
                                      cfg.model.vocab_size, cfg.model.seq_len));
  if (val_index) {
    // The validation set is read once, in order: a small cache is enough.
    val.emplace(io, val_index->shards, cfg.model.seq_len,
                datasets::plan_reader(val_index->shards, datasets::ShuffleConfig{}, 64 << 20,
                                      cfg.model.vocab_size, cfg.model.seq_len));
  }
}

void RunData::open_samples(comm::Communicator& world, storage::IoThread& io, TrainConfig& cfg) {
  train_samples = index_sample_shards(world, io, cfg.data, "--data", cfg.index_cache);
  if (!cfg.val_data.empty()) {
    if (!names_sample_shards(world, cfg.val_data, "--val-data")) {
      run_agreed(world, [&] {
        throw UsageError("--val-data " + cfg.val_data + " holds token shards but --data " +
                         cfg.data + " sample shards: hold out samples of the same kind");
      });
    }
    val_samples = index_sample_shards(world, io, cfg.val_data, "--val-data", cfg.index_cache);
  }
  run_agreed(world, [&] {
    complete_model_from_samples(cfg, train_samples->common);
    if (val_samples) {
      const auto& t = train_samples->common;
      const auto& v = val_samples->common;
      if (v.kind != t.kind || v.sample_shape != t.sample_shape || v.task != t.task ||
          v.num_targets != t.num_targets || v.has_lengths != t.has_lengths ||
          v.num_classes > t.num_classes || v.vocab_size > cfg.model.vocab_size) {
        throw UsageError("--val-data " + cfg.val_data + " holds samples unlike --data " + cfg.data +
                         " (kind, shape, task, targets, lengths, or classes or token ids the "
                         "training data lacks): hold out samples of the same dataset");
      }
    }
  });
  const size_t cache_bytes = static_cast<size_t>(cfg.data_cache_mb) << 20;
  train_set.emplace(io, train_samples->shards, cache_bytes);
  if (val_samples) val_set.emplace(io, val_samples->shards, size_t{64} << 20);
}

// ---- plan memory --------------------------------------------------------------------------------

MemoryPlan plan_run_memory(comm::Communicator& world, const comm::Placement& where,
                           const TrainConfig& cfg, const RunPlacement& placed, const RunLog& log) {
  const bool gpu = placed.device.device == job::Device::cuda;
  const bool checkpoints = !cfg.ckpt_dir.empty();
  const MemoryPlan plan =
      plan_memory(cfg, world.world_size(), placed.zero, gpu, placed.precision, checkpoints);
  log.say("memory per rank: " + plan.describe());
  run_agreed(world, [&] {
    // The CPU path's sharded collectives address the whole buffer in one MPI call ([ZeRO]).
    const uint64_t psi = ParamLayout(cfg.model).total();
    if (!gpu && placed.zero != ZeroStage::off && psi > static_cast<uint64_t>(INT_MAX)) {
      throw UsageError("--zero " + std::to_string(zero_level(placed.zero)) + ": the model has " +
                       std::to_string(psi) +
                       " parameters, more than one MPI call can address (2^31 - 1) on the CPU "
                       "path: pass --zero 0");
    }
    uint64_t available = 0;
    std::string what;
    if (gpu) {
      const kernels::CudaMemory m = kernels::cuda_memory(placed.device.gpu);
      available = m.free;
      what = "GPU " + std::to_string(placed.device.gpu) + " of " + where.host + " (free now)";
    } else {
      // The ranks of a node share its memory, and all of them start now.
      available = host_memory_available() / static_cast<uint64_t>(std::max(1, where.local_size));
      what = "rank " + std::to_string(world.rank()) + "'s share of " + where.host + " (" +
             std::to_string(where.local_size) + " rank(s) on the node)";
    }
    check_memory_fits(plan, available, what, cfg, world.world_size(), placed.zero, placed.precision,
                      checkpoints);
  });
  return plan;
}

// ---- resume -------------------------------------------------------------------------------------

std::optional<checkpoint::ResumeState> resume_run(comm::Communicator& world, storage::IoThread& io,
                                                  const TrainConfig& cfg, const RunData& data,
                                                  const RunLog& log) {
  // [Checkpoint layout]: the newest valid checkpoint (or the one named), checked against these
  // options and loaded on every rank, before anything is written.
  const checkpoint::CheckpointMeta base =
      checkpoint_base(cfg, world.world_size(), data.fingerprint());
  auto compatible = [&](const checkpoint::CheckpointMeta& saved) {
    check_resume_options(saved.config, cfg);
    checkpoint::check_same_state_and_data(saved, base);
  };
  return checkpoint::resume_from(world, io, cfg.resume, cfg.ckpt_dir, compatible, log.sayer());
}

// ---- outputs ------------------------------------------------------------------------------------

namespace {

// A published checkpoint, in the log and in the metrics.
void report_checkpoint(const checkpoint::SaveReport& r, const RunLog& log, MetricsWriter* metrics) {
  const double mb = r.bytes / 1e6;
  char line[512];
  std::snprintf(line, sizeof(line),
                "checkpoint %s: %.1f MB, stall %.1f ms, write %.2f s (%.0f MB/s), publish %.1f "
                "ms%s",
                r.path.c_str(), mb, r.stall_ms, r.write_s, r.write_s > 0 ? mb / r.write_s : 0.0,
                r.publish_ms, r.pruned.empty() ? "" : ", older ones removed");
  log.say(line);
  if (!metrics) return;
  metrics->write_event(JsonRecord()
                           .add("event", "checkpoint")
                           .add("step", r.step)
                           .add("path", r.path)
                           .add("bytes", r.bytes)
                           .add("stall_ms", r.stall_ms)
                           .add("write_s", r.write_s)
                           .add("publish_ms", r.publish_ms));
}

}  // namespace

void open_outputs(comm::Communicator& world, storage::IoThread& io, const TrainConfig& cfg,
                  const RunData& data, const checkpoint::ResumeState* resumed, const RunLog& log,
                  RunOutputs& out) {
  run_agreed(world, [&] {
    if (world.rank() == 0 && !cfg.metrics.empty())
      out.metrics.emplace(cfg.metrics, resumed ? resumed->meta.step : -1);
  });
  MetricsWriter* metrics = out.metrics ? &*out.metrics : nullptr;
  if (metrics && resumed) {
    metrics->write_event(JsonRecord()
                             .add("event", "resume")
                             .add("step", resumed->meta.step)
                             .add("from", resumed->path)
                             .add("saved_by_ranks", resumed->meta.world_size)
                             .add("ranks", world.world_size())
                             .add("bytes", resumed->bytes)
                             .add("load_s", resumed->load_s));
  }
  if (cfg.ckpt_dir.empty()) return;
  out.saver.emplace(
      world, io, cfg.ckpt_dir, cfg.ckpt_keep, cfg.ckpt_async,
      checkpoint_base(cfg, world.world_size(), data.fingerprint()),
      [&log, metrics](const checkpoint::SaveReport& r) { report_checkpoint(r, log, metrics); });
  out.saver->set_fault_kill_in_save(cfg.fault_kill_in_save);
}

// ---- banner -------------------------------------------------------------------------------------

namespace {

// Never throws: a broken driver must not stop a CPU run at its banner.
std::string cuda_summary() try {
  if (!kernels::cuda_built()) return "CUDA: not built";
  const int n = kernels::cuda_device_count();
  std::string s = "CUDA: built, " + std::to_string(n) + " device(s) visible";
  if (n > 0) s += " (" + kernels::cuda_device_name(0) + ")";
  const std::string nccl = comm::nccl_version();
  if (!nccl.empty()) s += ", NCCL " + nccl;
  return s;  // what trains where: the device line (choose_device)
} catch (const std::exception& e) {
  return std::string("CUDA: error querying devices (") + e.what() + ")";
}

}  // namespace

void print_banner(const TrainConfig& cfg, int world_size, const comm::Placement& where,
                  const RunPlacement& placed, RunData& data) {
  if (where.rank != 0) return;
  std::printf(
      "train: %d rank(s), %d on this node (%s) | %d thread(s)/rank | %s\n"
      "model: %s | %.3fM parameters | %.3g MFLOP/token\n"
      "batch: global %" PRId64
      " x %d %s | micro-batch %d/rank | %d accumulation step(s) | "
      "%" PRId64 " steps\n",
      world_size, where.local_size, where.host.c_str(), placed.threads, cuda_summary().c_str(),
      cfg.model.describe().c_str(), ParamLayout(cfg.model).total() / 1e6,
      model_flops_per_token(cfg.model) / 1e6, cfg.global_batch, cfg.model.positions(),
      cfg.model.task == Task::lm ? "tokens" : "positions", cfg.micro_batch,
      cfg.accum_steps(world_size), cfg.steps);
  if (data.samples()) {
    const datasets::SampleShardFacts& c = data.train_samples->common;
    std::string shape;
    for (uint64_t d : c.sample_shape)
      shape += (shape.empty() ? std::string() : std::string("x")) + std::to_string(d);
    const std::string outputs = c.task == datasets::SampleTask::classify
                                    ? std::to_string(c.num_classes) + " classes"
                                    : std::to_string(c.num_targets) + " target(s)";
    std::printf("data: %s | %zu sample shard(s), %" PRIu64
                " %s samples %s (%s) | %s%s | %s shuffle | index %s (%zu shard(s) scanned now)\n",
                cfg.data.c_str(), data.train_samples->shards.size(),
                data.train_samples->num_samples, datasets::sample_kind_name(c.kind), shape.c_str(),
                c.input_type.c_str(), outputs.c_str(), c.has_lengths ? ", with lengths" : "",
                datasets::shuffle_name(cfg.shuffle.mode), data.train_samples->index_path.c_str(),
                data.train_samples->inspected);
    for (const IndexedSamples* idx :
         {&*data.train_samples, data.val_samples ? &*data.val_samples : nullptr}) {
      if (idx && !idx->index_note.empty()) {
        std::printf(
            "train: warning: shard index not saved (%s); the next start scans the shards "
            "again. Pass --index-cache DIR to keep it elsewhere.\n",
            idx->index_note.c_str());
      }
    }
    if (data.val_set) {
      std::printf("val: %s | %zu shard(s), %" PRIu64 " samples | %" PRId64
                  " evaluated every %" PRId64 " step(s)\n",
                  cfg.val_data.c_str(), data.val_samples->shards.size(),
                  data.val_samples->num_samples,
                  std::min<int64_t>(cfg.val_samples, data.val_set->num_samples()),
                  cfg.val_every > 0 ? cfg.val_every : cfg.steps);
    }
    std::fflush(stdout);
    return;
  }
  const IndexedShards& ti = data.train_index;
  std::printf("data: %s | %zu shard(s), %.3fM tokens, %" PRIu64 " samples, vocab %" PRId64
              " | %s shuffle | index %s (%zu shard(s) scanned now)\n",
              cfg.data.c_str(), ti.shards.size(), ti.num_tokens / 1e6, data.train->num_samples(),
              ti.vocab_size, datasets::shuffle_name(cfg.shuffle.mode), ti.index_path.c_str(),
              ti.inspected);
  if (data.val) {
    std::printf(
        "val: %s | %zu shard(s), %.3fM tokens | %" PRId64 " samples every %" PRId64 " step(s)\n",
        cfg.val_data.c_str(), data.val_index->shards.size(), data.val_index->num_tokens / 1e6,
        std::min<int64_t>(cfg.val_samples, data.val->num_samples()),
        cfg.val_every > 0 ? cfg.val_every : cfg.steps);
  }
  const IndexedShards* val_index = data.val_index ? &*data.val_index : nullptr;
  for (const IndexedShards* idx : {&ti, val_index}) {
    if (idx && !idx->index_note.empty()) {
      std::printf(
          "train: warning: shard index not saved (%s); the next start scans the shards again. "
          "Pass --index-cache DIR to keep it elsewhere.\n",
          idx->index_note.c_str());
    }
  }
  std::fflush(stdout);
}

// ---- finish -------------------------------------------------------------------------------------

namespace {

// How long a rank waits at a stop for a signal it has not seen itself (stopped_early).
constexpr double kSignalReachGraceS = 1.0;

// [Stop requests]: the end of a run that a signal or the time limit stopped after an agreed
// step: says so, records it, and requeues the Slurm job when asked and allowed (rank 0, once
// every rank is done with the checkpoint).
int stopped_early(comm::Communicator& world, const comm::Placement& where, const TrainConfig& cfg,
                  const RunPlacement& placed, job::StopRequests& stop, const TrainResult& result,
                  RunOutputs& out) {
  const int64_t step = result.steps.back().step;
  const std::string why =
      job::describe_stop(result.stopped_by, cfg.preempt_signal, cfg.stop_before_limit_s);
  const bool saved = out.saver && out.saver->last_saved_step() == step;
  const bool requeue = cfg.requeue_on_preempt && job::stop_allows_requeue(result.stopped_by) &&
                       placed.slurm.in_job() && saved;
  // Which ranks the stop signal reached by itself, and on which hosts, tells whether it is
  // delivered to every node. Slurm signals each node on its own, so the stop may be agreed
  // before the signal has reached every rank: a rank that has not seen it yet waits for it up
  // to kSignalReachGraceS (one that is never sent it, such as ranks that mpirun forks outside
  // any step, waits that long once). The gather also waits for every rank's part of the
  // checkpoint, as the barrier before it did.
  const unsigned signals = result.stopped_by & (job::kStopTerm | job::kStopPreempt);
  const auto grace_end =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(kSignalReachGraceS);
  while ((stop.poll() & signals) != signals && std::chrono::steady_clock::now() < grace_end)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto own = comm::all_gather_value(world, static_cast<uint64_t>(stop.poll()));
  const auto hosts = comm::all_gather_strings(world, where.host);
  // Rank 0 alone speaks and requeues; the others wait for it (the second barrier below): a
  // rank that ended first would make srun --kill-on-bad-exit end the step under the requeue.
  if (world.rank() != 0) {
    world.barrier();
    return kExitStoppedEarly;
  }
  const std::string reach = job::describe_signal_reach(
      result.stopped_by, cfg.preempt_signal, std::vector<unsigned>(own.begin(), own.end()), hosts);
  std::string line = "stopped after step " + std::to_string(step) + " of " +
                     std::to_string(cfg.steps) + ": " + why + "; ";
  if (!reach.empty()) line += reach + "; ";
  line += saved ? "checkpoint step " + std::to_string(step) + " saved in " + cfg.ckpt_dir
                : "no checkpoint saved (no --ckpt-dir): a rerun starts over";
  // Said and recorded before the requeue: the requeue ends this job, and what comes after it
  // may be cut short.
  const std::string id = placed.slurm.requeue_id();
  if (requeue) {
    line += "; requeueing job " + id + " (--requeue-on-preempt): it continues with --resume auto";
  } else if (saved) {
    line += "; run the same command (with --resume auto) to continue";
  }
  std::printf("train: %s\n", line.c_str());
  std::fflush(stdout);
  if (out.metrics) {
    out.metrics->write_event(JsonRecord()
                                 .add("event", "stop")
                                 .add("step", step)
                                 .add("reason", why)
                                 .add("reach", reach)
                                 .add("saved", saved)
                                 .add("requeue", requeue));
  }
  if (requeue) {
    const job::RequeueResult r = job::requeue_job(placed.slurm);
    if (r.ok) {
      std::printf("train: job %s requeued\n", id.c_str());
    } else {
      std::fprintf(stderr,
                   "train: error: requeue of job %s failed (scontrol requeue: %s): submit the "
                   "job again to continue from the checkpoint\n",
                   id.c_str(), r.error.c_str());
    }
    std::fflush(stdout);
  }
  world.barrier();
  return kExitStoppedEarly;
}

}  // namespace

int finish_run(comm::Communicator& world, const comm::Placement& where, const TrainConfig& cfg,
               const RunPlacement& placed, job::StopRequests& stop, const TrainResult& result,
               RunOutputs& out) {
  if (result.stopped_by != 0) return stopped_early(world, where, cfg, placed, stop, result, out);
  if (world.rank() != 0) return 0;
  const StepRecord& last = result.steps.back();
  if (last.step < cfg.steps) {
    std::printf("train: stopped after step %" PRId64 " of %" PRId64
                " (--stop-at-step), loss %.6f, parameter hash %016" PRIx64
                "; run the same command with --resume auto to continue\n",
                last.step, cfg.steps, last.loss, result.final_param_hash);
  } else {
    std::printf("train: done, final loss %.6f, parameter hash %016" PRIx64 "\n", last.loss,
                result.final_param_hash);
  }
  return 0;
}

}  // namespace dpt::trainer
