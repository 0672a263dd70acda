// The collective watchdog: when a collective has not completed within --collective-timeout,
// say who is missing or who disagrees, then end the job.
//
// [Hang diagnosis] A thread on every rank looks at the [Flight recorder] a few times a second.
// When the oldest collective in flight has waited `timeout_s`, the rank asks the heartbeat
// service of rank 0 ([Heartbeat channel]) for every rank's last record and compares each with
// its own collective #S:
//   - missing:   the service has not heard from the rank for longer than `stale_s` (a stopped
//                or hung process, a lost node): its host, pid and what it last did, how long ago;
//   - disagrees: the rank waits in collective #S with another signature (kind, dtype, op or
//                bytes), or is past #S in another collective: the ranks called different
//                collectives, or in different orders;
//   - behind:    the rank is alive but has not reached #S (busy elsewhere: slow I/O, a long
//                phase, a deadlock outside the collectives);
//   - with us:   the rank waits in #S with the same signature.
// If every rank waits in #S with the same signature, the transport itself is stuck. Each live
// rank prints its report (every line prefixed "train: rank R:") and, after a short grace that
// lets the others fetch the table from rank 0 too, ends with kExitCollectiveTimeout; mpiexec or
// srun then ends the job, the stopped ranks included. If rank 0 does not answer, the report
// says so: rank 0 is then the likely missing rank.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "comm/heartbeat.h"

namespace dpt::comm {

// The exit code of a job ended by the watchdog (README: exit codes).
inline constexpr int kExitCollectiveTimeout = 3;

enum class PeerState { with_us, missing, disagrees, behind, silent };

struct PeerFinding {
  int rank = -1;
  PeerState state = PeerState::with_us;
  std::string text;  // one line: "rank 2 (host, pid 123): missing: ..."
};

struct HangDiagnosis {
  std::vector<PeerFinding> peers;  // every other rank, in rank order
  std::string headline;            // what this rank waits in, since when
  std::string summary;             // "rank 2 is missing", "the ranks disagree on #57: ..."
  bool service_answered = true;    // false: rank 0's service did not answer (peers unknown)
};

// The comparison above, as a pure function of this rank's record and the service's table
// (nullopt: the service did not answer).
HangDiagnosis diagnose(const RankRecord& me, const std::optional<std::vector<RankRecord>>& table,
                       double timeout_s, double stale_s, const std::string& service_host,
                       int service_pid);

// The report as printed: the headline, the peers that are not with us (at most kShownPeers,
// then a count), those with us as a list of ranks, and the summary. Every line ends in '\n'.
std::string format_report(int rank, const HangDiagnosis& d);
inline constexpr size_t kShownPeers = 32;

void report_backend_hang(const std::string& what);

class HangWatchdog {
 public:
  // Starts the watchdog thread; timeout_s > 0.
  HangWatchdog(const Heartbeat& heartbeat, double timeout_s);
  ~HangWatchdog();
  HangWatchdog(const HangWatchdog&) = delete;
  HangWatchdog& operator=(const HangWatchdog&) = delete;

  // What else a report goes to besides stderr (the trainer's metrics file on rank 0): called on
  // the reporting thread, after the report is printed and before the process ends, so it must
  // be quick and must not wait for the training thread. An empty function removes it; the
  // owner of what it captures removes it before that goes away.
  using Listener = std::function<void(const RankRecord& me, const HangDiagnosis& d)>;
  void set_listener(Listener listener);

  // How long a rank's silence makes it missing: a few heartbeats.
  static double stale_after(double interval_s) { return 3 * interval_s + 1.0; }
  // The heartbeat interval that suits a timeout: a tenth of it, within [0.1 s, 1 s].
  static double interval_for(double timeout_s);

 private:
  friend void report_backend_hang(const std::string& what);
  void watch();
  [[noreturn]] void fire(const RankRecord& me, const std::string& cause);

  const Heartbeat& heartbeat_;
  double timeout_s_;
  std::atomic<bool> stop_{false};
  std::mutex listener_mu_;
  Listener listener_;
  std::thread thread_;
};

// A backend that detects a timeout of its own (the NCCL watchdog on the GPU stream) reports
// through the same channel: with a HangWatchdog running this prints the report, naming
// `what`, and ends the process; without one it returns and the caller fails as before.
void report_backend_hang(const std::string& what);

}  // namespace dpt::comm
