// [Stop requests] A run ends early, after a step every rank agrees on and with a checkpoint of
// that step, when it is asked to:
// - the preemption signal (--preempt-signal, SIGUSR2 by default: NCCL has caught SIGUSR1 before,
//   NVIDIA/nccl#704). Slurm sends it ahead of the time limit with '#SBATCH --signal=USR2@180',
//   and a user or a tool with 'scancel --signal=USR2'. With --requeue-on-preempt rank 0 then
//   requeues the job, which continues with --resume auto;
// - SIGTERM (scancel, the end of the time limit, a preemption with GraceTime, kill): the same
//   stop, never a requeue by us: whoever sent it decides what follows (Slurm requeues a
//   preempted job itself under PreemptMode=REQUEUE);
// - --stop-before-limit S: rank 0 reads the Slurm job's time left (squeue, refreshed every few
//   minutes, as an administrator may extend it) and asks when S seconds remain; it is handled
//   as the preemption signal.
// Signals reach the ranks at different moments, so a handler only sets a flag. Each step's
// existing max all-reduce carries every rank's flags; all ranks see the same union after the
// same step and stop after it together. A request after the last step's all-reduce is too late
// to matter: the run is ending anyway.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace dpt::trainer {

// "USR2", "SIGUSR2" or "12" -> 12; "none" -> 0. Throws UsageError naming the accepted names
// (SIGTERM is refused: it always stops, without requeue).
int signal_number(const std::string& name);
// 12 -> "SIGUSR2".
std::string signal_name(int sig);

// Bits of a stop request, in the order they take precedence when reported.
enum StopReason : unsigned {
  kStopTerm = 1u,       // SIGTERM
  kStopPreempt = 2u,    // the preemption signal
  kStopTimeLimit = 4u,  // --stop-before-limit
};
// "SIGTERM", "SIGUSR2 (preemption)", "the time limit (--stop-before-limit 120)", joined by
// " and ".
std::string describe_stop(unsigned reasons, int preempt_signal, int64_t stop_before_limit);
// A preemption or the time limit, and not SIGTERM: the job may be requeued.
inline bool stop_allows_requeue(unsigned reasons) {
  return (reasons & kStopTerm) == 0 && (reasons & (kStopPreempt | kStopTimeLimit)) != 0;
}

// Slurm's time-left text ("45", "12:34", "1:02:03", "2-03", "2-03:04", "2-03:04:05") in seconds;
// nullopt for no limit or text it cannot read.
std::optional<int64_t> parse_slurm_time_left(const std::string& text);

// One per process. Installs handlers for the preemption signal (0: none) and SIGTERM, and
// restores the previous handlers when destroyed. A second SIGTERM ends the process at once
// (the default action): a rank stuck where the stop cannot reach it still goes on request.
class StopRequests {
 public:
  explicit StopRequests(int preempt_signal);
  ~StopRequests();
  StopRequests(const StopRequests&) = delete;
  StopRequests& operator=(const StopRequests&) = delete;

  // Rank 0 of a Slurm job: ask once at most margin_s seconds of the job are left. Reads the
  // time left now (reported through `say`), then again every 5 minutes on a thread of its own
  // (an administrator may extend the limit), so a slow squeue never holds up a step. A limit
  // that leaves no more than margin_s at the start is reported and not watched: every run
  // would stop after one step.
  void watch_time_limit(const std::string& job_id, int64_t margin_s,
                        const std::function<void(const std::string&)>& say);

  // This process's requests so far (StopReason bits), the time limit included.
  unsigned poll();

 private:
  // The job's end on the steady clock, in ns since its epoch (0: unknown or none); nullopt
  // when squeue did not answer. `text` says what was found.
  std::optional<int64_t> query_end(std::string* text) const;
  void refresh_loop();

  int preempt_signal_;
  std::string job_id_;
  int64_t margin_s_ = 0;
  std::atomic<int64_t> end_ns_{0};
  std::thread refresher_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
};

}  // namespace dpt::trainer
