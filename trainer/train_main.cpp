// The train executable: one process per rank under mpiexec/srun.
#include <sched.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <thread>

#include "comm/mpi_communicator.h"
#include "comm/mpi_session.h"
#include "comm/nccl_info.h"
#include "common/errors.h"
#include "common/hash.h"
#include "datasets/byte_file.h"
#include "datasets/window_loader.h"
#include "kernels/cpu_threads.h"
#include "kernels/cuda_device.h"
#include "trainer/agreement.h"
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
  return s + "; this build trains on the CPU path";
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
  int code = 1;
  std::string what = "unknown exception";
  try {
    throw;
  } catch (const UsageError& e) {
    code = 2;
    what = e.what();
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  std::fprintf(stderr, "train: %s on rank %d: %s\n", code == 2 ? "error" : "failure",
               session.rank(), what.c_str());
  if (session.world_size() > 1) session.abort(code);
  return code;
}

// Every rank must read the same bytes, or the global batch of step k differs between ranks
// while nothing fails. Throws UsageError naming the ranks that differ.
void check_same_data(comm::Communicator& world, const datasets::ByteFile& data,
                     const std::string& path) {
  const uint64_t mine[2] = {static_cast<uint64_t>(data.size()), fnv1a64(data.data(), data.size())};
  std::vector<uint64_t> all(2 * static_cast<size_t>(world.world_size()));
  world.all_gather(mine, all.data(), 2, comm::DType::u64);
  for (int r = 1; r < world.world_size(); ++r) {
    if (all[2 * r] != all[0] || all[2 * r + 1] != all[1]) {
      throw UsageError("--data " + path + " differs between ranks: rank 0 reads " +
                       std::to_string(all[0]) + " bytes, rank " + std::to_string(r) + " reads " +
                       std::to_string(all[2 * r]) + " bytes" +
                       (all[2 * r] == all[0] ? " with other contents" : "") +
                       ". Put the data on a filesystem every node sees, or copy the same file.");
    }
  }
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
    std::optional<datasets::ByteFile> data;
    std::optional<MetricsWriter> metrics;
    run_agreed(world, [&] {
      cfg.validate(W);
      data.emplace(datasets::ByteFile::load(cfg.data));
      if (cfg.vocab_from_data) {
        cfg.model.vocab_size = datasets::ByteFile::kVocabSize;
      } else if (cfg.model.vocab_size < datasets::ByteFile::kVocabSize) {
        throw UsageError("--vocab-size " + std::to_string(cfg.model.vocab_size) +
                         " is smaller than the byte vocabulary of --data (256 ids): omit " +
                         "--vocab-size to take it from the data, or set it to 256 or more.");
      }
      datasets::count_windows(*data, cfg.model.seq_len);
    });
    // Apart from loading: check_same_data is a collective, which a rank may only enter once
    // every rank has loaded its data. Metrics are opened after it passes, so a failed start
    // leaves an existing metrics file alone.
    run_agreed(world, [&] {
      check_same_data(world, *data, cfg.data);
      if (rank == 0 && !cfg.metrics.empty()) metrics.emplace(cfg.metrics);
    });

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
          "data: %s (%zu bytes)\n",
          W, place.local_size, place.host.c_str(), threads, cuda_summary().c_str(),
          cfg.model.describe().c_str(), params_m, model_flops_per_token(cfg.model) / 1e6,
          cfg.global_batch, cfg.model.seq_len, cfg.micro_batch, accum, cfg.steps, cfg.data.c_str(),
          data->size());
      std::fflush(stdout);
    }

    ProgressPrinter progress(cfg.log_every);
    auto on_step = [&](const StepRecord& r) {
      if (rank != 0) return;
      if (metrics) metrics->write(r);
      progress.on_step(r);
    };
    const TrainResult result = train(cfg, world, *data, on_step);
    if (rank == 0) {
      std::printf("train: done, final loss %.6f, parameter hash %016" PRIx64 "\n",
                  result.steps.back().loss, result.final_param_hash);
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
