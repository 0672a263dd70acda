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

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "job/time_limit.h"

namespace dpt::job {

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
std::string describe_stop(unsigned reasons, int preempt_signal, int64_t stop_before_limit_s);
// Which ranks a stop signal reached by itself, from every rank's own requests (StopRequests::
// poll after the stop) and host: "SIGUSR2 reached all 4 ranks" or "SIGUSR2 reached 2 of 4
// ranks; the others (node2 ranks 2-3) stopped by the agreement". Only the signals among
// `reasons` count (the time limit is watched by rank 0 alone); "" when there are none.
std::string describe_signal_reach(unsigned reasons, int preempt_signal,
                                  const std::vector<unsigned>& own_requests,
                                  const std::vector<std::string>& hosts);
// A preemption or the time limit, and not SIGTERM: the job may be requeued.
inline bool stop_allows_requeue(unsigned reasons) {
  return (reasons & kStopTerm) == 0 && (reasons & (kStopPreempt | kStopTimeLimit)) != 0;
}

// The agreed stop: this rank's requests as one vote per kind, carried by the step's max
// all-reduce (the trainer's [Step votes]); after the reduction every rank holds the union, and
// all stop after the same step.
struct StopVote {
  double term = 0, preempt = 0, time_limit = 0;  // 1: asked

  static StopVote of(unsigned reasons) {
    return {(reasons & kStopTerm) ? 1.0 : 0.0, (reasons & kStopPreempt) ? 1.0 : 0.0,
            (reasons & kStopTimeLimit) ? 1.0 : 0.0};
  }
  unsigned reasons() const {
    return (term > 0 ? kStopTerm : 0u) | (preempt > 0 ? kStopPreempt : 0u) |
           (time_limit > 0 ? kStopTimeLimit : 0u);
  }
};

// One per process. Installs handlers for the preemption signal (0: none) and SIGTERM, and
// restores the previous handlers when destroyed. A second SIGTERM ends the process at once
// (the default action): a rank stuck where the stop cannot reach it still goes on request.
class StopRequests {
 public:
  explicit StopRequests(int preempt_signal);
  ~StopRequests();
  StopRequests(const StopRequests&) = delete;
  StopRequests& operator=(const StopRequests&) = delete;

  // Rank 0 of a Slurm job: also ask once at most margin_s seconds of the job are left
  // (TimeLimitWatch::start).
  void watch_time_limit(const std::string& job_id, int64_t margin_s,
                        const std::function<void(const std::string&)>& say) {
    time_limit_.start(job_id, margin_s, say);
  }

  // This process's requests so far (StopReason bits), the time limit included.
  unsigned poll();

 private:
  int preempt_signal_;
  TimeLimitWatch time_limit_;
};

}  // namespace dpt::job
