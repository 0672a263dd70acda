// The train executable: one process per rank under mpiexec/srun.
#include <sched.h>

#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <thread>

#include "comm/mpi_communicator.h"
#include "comm/mpi_session.h"
#include "comm/nccl_info.h"
#include "comm/slurm_env.h"
#include "common/errors.h"
#include "common/hash.h"
#include "common/subprocess.h"
#include "datasets/io_thread.h"
#include "datasets/shard_reader.h"
#include "datasets/shard_set.h"
#include "datasets/token_dataset.h"
#include "kernels/cpu_threads.h"
#include "kernels/cuda_device.h"
#include "trainer/agreement.h"
#include "trainer/checkpointer.h"
#include "trainer/data_setup.h"
#include "trainer/device_choice.h"
#include "trainer/metrics.h"
#include "trainer/param_layout.h"
#include "trainer/train_config.h"
#include "trainer/training.h"

namespace {

using namespace dpt;
using namespace dpt::trainer;

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

// Threads per rank when --threads is 0: OMP_NUM_THREADS if set (as torchrun and most MPI
// launch scripts set it); else the CPUs this process may run on, shared among the ranks of the
// node when the launcher did not bind them (the mask covers the whole node).
int default_threads(int local_size) {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  cpu_set_t mask;
  CPU_ZERO(&mask);
  int allowed = 0;
  if (sched_getaffinity(0, sizeof(mask), &mask) == 0) allowed = CPU_COUNT(&mask);
  const int node = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (allowed <= 0) allowed = node;
  if (allowed >= node) return std::max(1, node / std::max(1, local_size));
  return allowed;
}

// For a failure this rank met alone, inside a catch block: reports it and, with other ranks
// that may be waiting in a collective, ends the whole job. Returns the exit code (2 for a
// UsageError, else 1) where MPI_Abort does not end the process first.
int fail_alone(comm::MpiSession& session) {
  std::string what;
  const int code = exit_code_of_current_exception(&what);
  std::fprintf(stderr, "train: %s on rank %d: %s\n", code == 2 ? "error" : "failure",
               session.rank(), what.c_str());
  if (session.world_size() > 1) session.abort(code);
  return code;
}

// Exit code of a run stopped by a stop request with its state saved: EX_TEMPFAIL, "try
// again": the work is not done, and running the same command continues it.
constexpr int kExitStoppedEarly = 75;

// [Stop requests]: the end of a run that a signal or the time limit stopped after an agreed
// step: says so, records it, and requeues the Slurm job when asked and allowed (rank 0, once
// every rank is done with the checkpoint). Returns the exit code.
int stopped_early(const TrainConfig& cfg, comm::Communicator& world, const TrainResult& result,
                  int64_t saved_step, const comm::SlurmEnv& slurm, MetricsWriter* metrics) {
  const int64_t step = result.steps.back().step;
  const std::string why =
      describe_stop(result.stopped_by, signal_number(cfg.preempt_signal), cfg.stop_before_limit);
  const bool saved = saved_step == step;
  const bool requeue =
      cfg.requeue_on_preempt && stop_allows_requeue(result.stopped_by) && slurm.in_job() && saved;
  world.barrier();  // every rank has finished its part of the checkpoint
  // Rank 0 alone speaks and requeues; the others wait for it (the second barrier below): a
  // rank that ended first would make srun --kill-on-bad-exit end the step under the requeue.
  if (world.rank() != 0) {
    world.barrier();
    return kExitStoppedEarly;
  }
  std::string line = "stopped after step " + std::to_string(step) + " of " +
                     std::to_string(cfg.steps) + ": " + why + "; ";
  line += saved ? "checkpoint step " + std::to_string(step) + " saved in " + cfg.ckpt_dir
                : "no checkpoint saved (no --ckpt-dir): a rerun starts over";
  // Said and recorded before the requeue: the requeue ends this job, and what comes after it
  // may be cut short.
  if (requeue) {
    line += "; requeueing job " + slurm.requeue_id() +
            " (--requeue-on-preempt): it continues "
            "with --resume auto";
  } else if (saved) {
    line += "; run the same command (with --resume auto) to continue";
  }
  std::printf("train: %s\n", line.c_str());
  std::fflush(stdout);
  if (metrics) {
    metrics->write_event("\"event\": \"stop\", \"step\": " + std::to_string(step) +
                         ", \"reason\": \"" + why + "\", \"saved\": " + (saved ? "true" : "false") +
                         ", \"requeue\": " + (requeue ? "true" : "false"));
  }
  if (requeue) {
    const CommandResult r = run_command({"scontrol", "requeue", slurm.requeue_id()}, 60);
    if (r.exit_code == 0) {
      std::printf("train: job %s requeued\n", slurm.requeue_id().c_str());
    } else {
      std::string why_not = r.error.empty() ? r.output : r.error;
      while (!why_not.empty() && std::isspace(static_cast<unsigned char>(why_not.back())))
        why_not.pop_back();
      std::fprintf(stderr,
                   "train: error: requeue of job %s failed (scontrol requeue: %s): submit the "
                   "job again to continue from the checkpoint\n",
                   slurm.requeue_id().c_str(), why_not.c_str());
    }
    std::fflush(stdout);
  }
  world.barrier();
  return kExitStoppedEarly;
}

int run(comm::MpiSession& session, comm::Communicator& world, int argc, char** argv) {
  const int rank = world.rank();
  const int W = world.world_size();
  try {
    ParsedOptions opts;
    run_agreed(world, [&] { opts = parse_train_options(argc, argv); });
    if (opts.help) {
      if (rank == 0) std::printf("%s\n", opts.help_text.c_str());
      return 0;
    }
    TrainConfig cfg = opts.config;
    run_agreed(world, [&] { cfg.validate(W); });
    auto say = [&](const std::string& line) {
      if (rank != 0) return;
      std::printf("train: %s\n", line.c_str());
      std::fflush(stdout);
    };
    // [Stop requests]: handlers first, so that a signal during the start is not lost.
    StopRequests stop(signal_number(cfg.preempt_signal));
    // Where the ranks run: Slurm's view checked against MPI's, then the device and GPU mapping.
    const comm::SlurmEnv slurm = comm::SlurmEnv::from_environment();
    std::string local_how, nodes;
    DeviceChoice device;
    run_agreed(world, [&] {
      local_how = comm::check_slurm_placement(world, session.placement(), slurm);
      nodes = comm::describe_nodes(world, session.placement());
      device = choose_device(cfg.device, world, session.placement());
    });
    if (slurm.in_job()) {
      say("slurm: job " + slurm.job_id +
          (slurm.array_job_id.empty() ? "" : " (array task " + slurm.requeue_id() + ")") +
          ", restart " + std::to_string(slurm.restart_count) + ", nodes " + slurm.nodelist);
    }
    say("placement: " + nodes + " | local rank: " + local_how);
    say(device.summary);
    // --dtype auto: bf16 on GPUs (fp32 master weights and optimizer state), fp32 on the CPU.
    const std::string dtype =
        cfg.dtype != "auto" ? cfg.dtype : (device.device == "cuda" ? "bf16" : "fp32");
    if (dtype == "bf16" && device.device != "cuda") {
      run_agreed(world, [&] {
        throw UsageError("--dtype bf16 needs the GPU path, but --device " + cfg.device +
                         " chose the CPU (" +
                         (device.summary.empty() ? "see rank 0" : device.summary) +
                         "). Pass --dtype fp32 or auto, or run where every rank has a GPU.");
      });
    }
    if (cfg.stop_before_limit > 0 && rank == 0) {
      if (slurm.in_job()) {
        stop.watch_time_limit(slurm.job_id, cfg.stop_before_limit, say);
      } else {
        say("warning: --stop-before-limit: not in a Slurm job (no SLURM_JOB_ID), so there is "
            "no time limit to watch");
      }
    }

    // [I/O thread] declared before the datasets, which close their files on it.
    datasets::IoThread io;
    const IndexedShards train_idx = index_shards(world, io, cfg.data, "--data", cfg.index_cache);
    std::optional<IndexedShards> val_idx;
    if (!cfg.val_data.empty())
      val_idx = index_shards(world, io, cfg.val_data, "--val-data", cfg.index_cache);
    run_agreed(world, [&] {
      if (cfg.vocab_from_data) cfg.model.vocab_size = static_cast<int>(train_idx.vocab_size);
      datasets::check_shards_fit(train_idx.shards, cfg.model.seq_len, cfg.model.vocab_size,
                                 "--data");
      if (val_idx) {
        datasets::check_shards_fit(val_idx->shards, cfg.model.seq_len, cfg.model.vocab_size,
                                   "--val-data");
      }
    });
    const size_t cache_bytes = static_cast<size_t>(cfg.data_cache_mb) << 20;
    datasets::TokenDataset train_data(
        io, train_idx.shards, cfg.model.seq_len,
        datasets::plan_reader(train_idx.shards, cfg.shuffle_config(), cache_bytes,
                              cfg.model.vocab_size, cfg.model.seq_len));
    std::optional<datasets::TokenDataset> val_data;
    if (val_idx) {
      // The validation set is read once, in order: a small cache is enough.
      val_data.emplace(io, val_idx->shards, cfg.model.seq_len,
                       datasets::plan_reader(val_idx->shards, datasets::ShuffleConfig{}, 64 << 20,
                                             cfg.model.vocab_size, cfg.model.seq_len));
    }
    // [Checkpoint layout]: the newest valid checkpoint (or the one named), checked against
    // these options and loaded on every rank, before anything is written.
    const CheckpointMeta ckpt_base = checkpoint_base(cfg, W, train_idx.shards);
    const std::optional<ResumeState> resumed =
        resume_from(world, io, cfg.resume, cfg.ckpt_dir, ckpt_base, say);
    if (resumed && resumed->meta.step >= cfg.last_step()) {
      say("the checkpoint is at step " + std::to_string(resumed->meta.step) +
          (cfg.last_step() < cfg.steps ? " of --stop-at-step " + std::to_string(cfg.last_step())
                                       : " of --steps " + std::to_string(cfg.steps)) +
          ": nothing left to train (raise it to go on)");
      return 0;
    }
    // Opened once every check passed, so a failed start leaves an existing metrics file alone.
    std::optional<MetricsWriter> metrics;
    run_agreed(world, [&] {
      if (rank == 0 && !cfg.metrics.empty())
        metrics.emplace(cfg.metrics, resumed ? resumed->meta.step : -1);
    });
    if (metrics && resumed) {
      char load[96];
      std::snprintf(load, sizeof(load), ", \"bytes\": %llu, \"load_s\": %.6g",
                    static_cast<unsigned long long>(resumed->bytes), resumed->load_s);
      metrics->write_event("\"event\": \"resume\", \"step\": " +
                           std::to_string(resumed->meta.step) + ", \"from\": \"" + resumed->path +
                           "\", \"saved_by_ranks\": " + std::to_string(resumed->meta.world_size) +
                           ", \"ranks\": " + std::to_string(W) + load);
    }
    std::optional<Checkpointer> saver;
    if (!cfg.ckpt_dir.empty()) {
      saver.emplace(world, io, cfg.ckpt_dir, cfg.ckpt_keep, cfg.ckpt_async, ckpt_base,
                    [&](const SaveReport& r) {
                      const double mb = r.bytes / 1e6;
                      char line[512];
                      std::snprintf(line, sizeof(line),
                                    "checkpoint %s: %.1f MB, stall %.1f ms, write %.2f s "
                                    "(%.0f MB/s), publish %.1f ms%s",
                                    r.path.c_str(), mb, r.stall_ms, r.write_s,
                                    r.write_s > 0 ? mb / r.write_s : 0.0, r.publish_ms,
                                    r.pruned.empty() ? "" : ", older ones removed");
                      say(line);
                      if (!metrics) return;
                      std::snprintf(line, sizeof(line),
                                    "\"event\": \"checkpoint\", \"step\": %lld, \"path\": "
                                    "\"%s\", \"bytes\": %llu, \"stall_ms\": %.6g, "
                                    "\"write_s\": %.6g, \"publish_ms\": %.6g",
                                    static_cast<long long>(r.step), r.path.c_str(),
                                    static_cast<unsigned long long>(r.bytes), r.stall_ms, r.write_s,
                                    r.publish_ms);
                      metrics->write_event(line);
                    });
      saver->set_fault_kill_in_save(cfg.fault_kill_in_save);
    }

    const auto& place = session.placement();
    const int threads = cfg.threads > 0 ? cfg.threads : default_threads(place.local_size);
    kernels::set_cpu_threads(threads);

    const int accum = cfg.accum_steps(W);
    if (rank == 0) {
      const double params_m = ParamLayout(cfg.model).total() / 1e6;
      std::printf(
          "train: %d rank(s), %d on this node (%s) | %d thread(s)/rank | %s\n"
          "model: %s | %.3fM parameters | %.3g MFLOP/token\n"
          "batch: global %" PRId64
          " x %d tokens | micro-batch %d/rank | %d accumulation "
          "step(s) | %" PRId64
          " steps\n"
          "data: %s | %zu shard(s), %.3fM tokens, %" PRIu64 " samples, vocab %" PRId64
          " | %s shuffle | index %s (%zu shard(s) scanned now)\n",
          W, place.local_size, place.host.c_str(), threads, cuda_summary().c_str(),
          cfg.model.describe().c_str(), params_m, model_flops_per_token(cfg.model) / 1e6,
          cfg.global_batch, cfg.model.seq_len, cfg.micro_batch, accum, cfg.steps, cfg.data.c_str(),
          train_idx.shards.size(), train_idx.num_tokens / 1e6, train_data.num_samples(),
          train_idx.vocab_size, cfg.shuffle.c_str(), train_idx.index_path.c_str(),
          train_idx.inspected);
      if (val_data) {
        std::printf("val: %s | %zu shard(s), %.3fM tokens | %" PRId64 " samples every %" PRId64
                    " step(s)\n",
                    cfg.val_data.c_str(), val_idx->shards.size(), val_idx->num_tokens / 1e6,
                    std::min<int64_t>(cfg.val_samples, val_data->num_samples()),
                    cfg.val_every > 0 ? cfg.val_every : cfg.steps);
      }
      const IndexedShards* val_ptr = val_idx ? &*val_idx : nullptr;
      for (const IndexedShards* idx : {&train_idx, val_ptr}) {
        if (idx && !idx->index_note.empty()) {
          std::printf(
              "train: warning: shard index not saved (%s); the next start scans the "
              "shards again. Pass --index-cache DIR to keep it elsewhere.\n",
              idx->index_note.c_str());
        }
      }
      std::fflush(stdout);
    }

    ProgressPrinter progress(cfg.log_every);
    auto on_step = [&](const StepRecord& r) {
      if (rank != 0) return;
      if (metrics) metrics->write(r);
      progress.on_step(r);
    };
    TrainControl control;
    control.saver = saver ? &*saver : nullptr;
    control.resume = resumed ? &*resumed : nullptr;
    control.stop = &stop;
    control.gpu = device.gpu;  // -1 unless the ranks train on GPUs
    control.dtype = dtype;
    control.say = say;
    const TrainResult result =
        train(cfg, world, TrainData{train_data, val_data ? &*val_data : nullptr}, on_step, control);
    if (result.stopped_by != 0)
      return stopped_early(cfg, world, result, saver ? saver->last_saved_step() : -1, slurm,
                           metrics ? &*metrics : nullptr);
    if (rank == 0) {
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
    }
    return 0;
  } catch (const AgreedFailure& e) {
    // Every rank holds the same failure; rank 0 reports it once.
    if (rank == 0) std::fprintf(stderr, "train: error: %s\n", e.what());
    return e.exit_code();
  } catch (...) {
    return fail_alone(session);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<dpt::comm::MpiSession> session;
  try {
    session.emplace(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train: failure starting MPI: %s\n", e.what());
    return 1;
  }
  int code = 0;
  try {
    {
      dpt::comm::MpiCommunicator world(MPI_COMM_WORLD);
      code = run(*session, world, argc, argv);
    }  // the communicator is freed before MPI is finalized
    session->finalize();
  } catch (...) {
    return fail_alone(*session);
  }
  return code;
}
