// The train executable: one process per rank under mpiexec/srun.
#include <cinttypes>
#include <cstdio>
#include <optional>
#include <thread>

#include "comm/mpi_communicator.h"
#include "comm/mpi_session.h"
#include "common/errors.h"
#include "datasets/byte_file.h"
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

std::string cuda_summary() {
  if (!kernels::cuda_built()) return "CUDA: not built";
  const int n = kernels::cuda_device_count();
  std::string s = "CUDA: built, " + std::to_string(n) + " device(s) visible";
  if (n > 0) s += " (" + kernels::cuda_device_name(0) + ")";
  return s + "; this build trains on the CPU path";
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
      if (data->size() < static_cast<size_t>(cfg.model.seq_len) + 1) {
        throw UsageError("--seq-len " + std::to_string(cfg.model.seq_len) + " needs at least " +
                         std::to_string(cfg.model.seq_len + 1) + " tokens per sample, but --data " +
                         cfg.data + " holds " + std::to_string(data->size()) +
                         ". Use a shorter --seq-len or a larger data file.");
      }
      if (rank == 0 && !cfg.metrics.empty()) metrics.emplace(cfg.metrics);
    });

    const auto& place = session.placement();
    int threads = cfg.threads;
    if (threads == 0) {
      const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
      threads = std::max(1, cores / std::max(1, place.local_size));
    }
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
  } catch (const UsageError& e) {
    std::fprintf(stderr, "train: error on rank %d: %s\n", rank, e.what());
    if (W > 1) session.abort(2);  // other ranks may be waiting in a collective
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train: failure on rank %d: %s\n", rank, e.what());
    if (W > 1) session.abort(1);
    return 1;
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
  {
    dpt::comm::MpiCommunicator world(MPI_COMM_WORLD);
    code = run(*session, world, argc, argv);
  }
  session->finalize();
  return code;
}
