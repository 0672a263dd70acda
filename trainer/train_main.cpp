// The train executable: one process per rank under mpiexec or srun. run() is the run, step by
// step (run_steps.h); main() owns MPI.
#include <cstdio>
#include <optional>

#include "comm/agreement.h"
#include "comm/hang_watchdog.h"
#include "comm/heartbeat.h"
#include "comm/monitored_communicator.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_session.h"
#include "common/crash_note.h"
#include "common/errors.h"
#include "storage/io_thread.h"
#include "trainer/run_steps.h"

namespace {

using namespace dpt;
using namespace dpt::trainer;

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

// A checkpoint at or past the last step to train leaves nothing to do.
bool nothing_left(const TrainConfig& cfg, const checkpoint::ResumeState& resumed,
                  const RunLog& log) {
  if (resumed.meta.step < cfg.last_step()) return false;
  log.say("the checkpoint is at step " + std::to_string(resumed.meta.step) +
          (cfg.last_step() < cfg.steps ? " of --stop-at-step " + std::to_string(cfg.last_step())
                                       : " of --steps " + std::to_string(cfg.steps)) +
          ": nothing left to train (raise it to go on)");
  return true;
}

int run(comm::MpiSession& session, comm::Communicator& world, int argc, char** argv) {
  try {
    std::optional<TrainConfig> parsed = parse_run(world, argc, argv);
    if (!parsed) return 0;  // --help
    TrainConfig& cfg = *parsed;
    const RunLog log(world.rank());
    // [Hang diagnosis]: from here on, a collective that does not complete ends the job with a
    // report (the heartbeat's start is a collective of every rank).
    std::optional<comm::Heartbeat> heartbeat;
    std::optional<comm::HangWatchdog> watchdog;
    if (cfg.collective_timeout_s > 0) {
      heartbeat.emplace(world, session.placement().host,
                        comm::HangWatchdog::interval_for(cfg.collective_timeout_s));
      watchdog.emplace(*heartbeat, cfg.collective_timeout_s);
    }
    // [Stop requests]: handlers first, so that a signal during the start is not lost.
    job::StopRequests stop(cfg.preempt_signal);
    storage::IoThread io;  // [I/O thread], before the datasets, which close their files on it
    // The data completes the model (its task, input and head) that placement chooses for.
    RunData data(world, io, cfg);
    const RunPlacement placed = place_run(world, session.placement(), cfg, stop, log);
    plan_run_memory(world, session.placement(), cfg, placed, log);
    std::optional<checkpoint::ResumeState> resumed = resume_run(world, io, cfg, data, log);
    if (resumed && nothing_left(cfg, *resumed, log)) return 0;
    RunOutputs out;
    open_outputs(world, io, cfg, data, resumed ? &*resumed : nullptr, log, out);
    // A hang report goes to the metrics file too (rank 0 writes it), until `out` goes away.
    struct StopListening {
      std::optional<comm::HangWatchdog>& watchdog;
      ~StopListening() {
        if (watchdog) watchdog->set_listener(nullptr);
      }
    } stop_listening{watchdog};
    if (watchdog && out.metrics) {
      watchdog->set_listener(
          [&metrics = *out.metrics](const comm::RankRecord& me, const comm::HangDiagnosis& d) {
            metrics.write_event(hang_event(me, d));
          });
    }
    print_banner(cfg, world.world_size(), session.placement(), placed, data);

    TrainControl control;
    control.saver = out.saver ? &*out.saver : nullptr;
    control.resume = resumed ? &*resumed : nullptr;
    control.stop = &stop;
    control.gpu = placed.device.gpu;  // -1 unless the ranks train on GPUs
    control.precision = placed.precision;
    control.zero = placed.zero;
    control.peak_flops = placed.peak_flops;
    control.host = session.placement().host;
    control.say = log.sayer();
    const std::unique_ptr<Replica> model = build_replica(cfg, world, control);
    if (resumed) {
      // The replica holds its state now; a sharded one only its range ([ZeRO]), so the full
      // tensors read from the checkpoint go back (12 bytes a parameter).
      std::vector<float>().swap(resumed->params);
      std::vector<float>().swap(resumed->m);
      std::vector<float>().swap(resumed->v);
    }

    ProgressPrinter progress(cfg.log_every);
    auto on_step = [&](const StepRecord& r) {
      if (world.rank() != 0) return;
      if (out.metrics) out.metrics->write(r);
      progress.on_step(r);
    };
    const TrainResult result = train(cfg, world, *model, data.view(), on_step, control);
    return finish_run(world, session.placement(), cfg, placed, stop, result, out);
  } catch (const comm::AgreedFailure& e) {
    // Every rank holds the same failure; rank 0 reports it once.
    if (world.rank() == 0) std::fprintf(stderr, "train: error: %s\n", e.what());
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
  // [Crash note]: a library crash names what it was reading (after MPI's own handlers).
  dpt::install_crash_reporter("train", session->rank());
  int code = 0;
  try {
    {
      dpt::comm::MpiCommunicator mpi(MPI_COMM_WORLD);
      dpt::comm::MonitoredCommunicator world(mpi);  // [Flight recorder]
      code = run(*session, world, argc, argv);
    }  // the communicator is freed before MPI is finalized
    session->finalize();
  } catch (...) {
    return fail_alone(*session);
  }
  return code;
}
