// [Hang diagnosis]: the comparison of the ranks' records, the report, and the watchdog thread.
#include "comm/hang_watchdog.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <sstream>

namespace dpt::comm {

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

std::string who(const RankRecord& r) {
  return "rank " + std::to_string(r.rank) + " (" + std::string(r.host) + ", pid " +
         std::to_string(r.pid) + ")";
}

// "at step 12, phase "forward/backward" for 3.2 s"
std::string doing(const RankRecord& r) {
  std::string s = r.step >= 0 ? "at step " + std::to_string(r.step) : std::string("before step 1");
  return s + ", phase \"" + std::string(r.phase) + "\" for " + fmt("%.1f s", r.phase_s);
}

std::string in_collective(const RankRecord& r) {
  return "collective #" + std::to_string(r.pending_seq) + " " + r.pending_signature().text() +
         " for " + fmt("%.1f s", r.pending_s);
}

std::string last_collective(const RankRecord& r) {
  if (r.entered == 0) return "no collective yet";
  return "its last collective #" + std::to_string(r.entered) + " ended " +
         fmt("%.1f s", r.since_last_s) + " before it was last heard";
}

// "0-5, 7, 9"
std::string rank_list(std::vector<int> ranks) {
  std::sort(ranks.begin(), ranks.end());
  std::ostringstream s;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1)
      ++j;
    s << (i > 0 ? ", " : "") << ranks[i];
    if (j > i) s << "-" << ranks[j];
    i = j + 1;
  }
  return s.str();
}

std::string plural(size_t n, const char* one, const char* many) {
  return n == 1 ? one : many;
}

}  // namespace

HangDiagnosis diagnose(const RankRecord& me, const std::optional<std::vector<RankRecord>>& table,
                       double timeout_s, double stale_s, const std::string& service_host,
                       int service_pid) {
  HangDiagnosis d;
  const CollectiveSignature mine = me.pending_signature();
  const uint64_t S = me.pending_seq;
  d.headline = who(me) + ": collective #" + std::to_string(S) + " " + mine.text() +
               " has not completed in " + fmt("%.1f s", me.pending_s) + " (--collective-timeout " +
               fmt("%g", timeout_s) + "), " + doing(me);
  if (!table) {
    d.service_answered = false;
    d.summary = "the heartbeat service on rank 0 (" + service_host + ", pid " +
                std::to_string(service_pid) +
                ") did not answer: rank 0 is stopped, hung or its node is down, the likely "
                "missing rank; what the other ranks do is unknown from here";
    return d;
  }
  std::vector<int> missing, disagree, behind, silent;
  for (const RankRecord& r : *table) {
    if (r.rank == me.rank) continue;
    PeerFinding f;
    f.rank = r.rank;
    const CollectiveSignature theirs = r.pending_signature();
    if (r.heard_s_ago < 0) {
      f.state = PeerState::silent;
      f.text = "rank " + std::to_string(r.rank) +
               ": never reported to the heartbeat service (it could not connect, or died "
               "before it did)";
      silent.push_back(r.rank);
    } else if (r.heard_s_ago > stale_s) {
      f.state = PeerState::missing;
      f.text = who(r) + ": missing: not heard from for " + fmt("%.1f s", r.heard_s_ago) +
               " (stopped, hung, or its node is down); last seen " + doing(r) + ", " +
               (r.pending_seq != 0 ? "in " + in_collective(r) : last_collective(r));
      missing.push_back(r.rank);
    } else if (r.pending_seq == S && theirs == mine) {
      f.state = PeerState::with_us;
    } else if (r.pending_seq == S) {
      f.state = PeerState::disagrees;
      f.text = who(r) + ": disagrees: its collective #" + std::to_string(S) + " is " +
               theirs.text() + ", here " + mine.text() + "; " + doing(r);
      disagree.push_back(r.rank);
    } else if (r.entered >= S) {
      f.state = PeerState::disagrees;
      f.text = who(r) + ": disagrees: it is past #" + std::to_string(S) + ", " +
               (r.pending_seq != 0 ? "in " + in_collective(r)
                                   : "in no collective, " + last_collective(r)) +
               "; " + doing(r);
      disagree.push_back(r.rank);
    } else {
      f.state = PeerState::behind;
      f.text = who(r) + ": has not entered #" + std::to_string(S) + " (alive, heard " +
               fmt("%.1f s", r.heard_s_ago) + " ago): " + doing(r) + ", " +
               (r.pending_seq != 0 ? "in " + in_collective(r) : last_collective(r));
      behind.push_back(r.rank);
    }
    d.peers.push_back(std::move(f));
  }
  if (!missing.empty()) {
    d.summary = plural(missing.size(), "rank ", "ranks ") + rank_list(missing) +
                plural(missing.size(), " is", " are") +
                " missing: stopped answering while the others wait in #" + std::to_string(S);
  } else if (!disagree.empty()) {
    d.summary = "the ranks disagree on collective #" + std::to_string(S) + ": " +
                plural(disagree.size(), "rank ", "ranks ") + rank_list(disagree) +
                " called another collective than this rank, or in another order";
  } else if (!behind.empty()) {
    d.summary = plural(behind.size(), "rank ", "ranks ") + rank_list(behind) +
                plural(behind.size(), " is", " are") + " alive but " +
                plural(behind.size(), "has", "have") + " not reached #" + std::to_string(S) +
                " (slow or stuck outside the collectives)";
  } else if (!silent.empty()) {
    d.summary = plural(silent.size(), "rank ", "ranks ") + rank_list(silent) +
                " never reported: nothing is known of " + plural(silent.size(), "it", "them");
  } else {
    d.summary = "every rank waits in #" + std::to_string(S) +
                " with the same signature: the transport itself is stuck (network, MPI or "
                "NCCL)";
  }
  return d;
}

std::string format_report(int rank, const HangDiagnosis& d) {
  const std::string pre = "train: rank " + std::to_string(rank) + ": ";
  std::string out = "train: error: " + d.headline + "\n";
  std::vector<int> with_us;
  size_t shown = 0, hidden = 0;
  for (const PeerFinding& f : d.peers) {
    if (f.state == PeerState::with_us) {
      with_us.push_back(f.rank);
    } else if (shown < kShownPeers) {
      out += pre + "  " + f.text + "\n";
      ++shown;
    } else {
      ++hidden;
    }
  }
  if (hidden > 0) out += pre + "  ... and " + std::to_string(hidden) + " more rank(s) like these\n";
  if (!with_us.empty()) {
    out += pre + "  " + plural(with_us.size(), "rank ", "ranks ") + rank_list(with_us) + " wait" +
           plural(with_us.size(), "s", "") + " in it too\n";
  }
  out += pre + "diagnosis: " + d.summary + "; the job ends with exit code " +
         std::to_string(kExitCollectiveTimeout) + "\n";
  return out;
}

// ---- the watchdog -------------------------------------------------------------------------------

namespace {
std::mutex g_mu;
HangWatchdog* g_watchdog = nullptr;  // the running one, for report_backend_hang
}  // namespace

double HangWatchdog::interval_for(double timeout_s) {
  return std::clamp(timeout_s / 10, 0.1, 1.0);
}

HangWatchdog::HangWatchdog(const Heartbeat& heartbeat, double timeout_s)
    : heartbeat_(heartbeat), timeout_s_(timeout_s) {
  thread_ = std::thread([this] { watch(); });
  const std::lock_guard<std::mutex> lock(g_mu);
  g_watchdog = this;
}

HangWatchdog::~HangWatchdog() {
  {
    const std::lock_guard<std::mutex> lock(g_mu);
    if (g_watchdog == this) g_watchdog = nullptr;
  }
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void HangWatchdog::set_listener(Listener listener) {
  const std::lock_guard<std::mutex> lock(listener_mu_);
  listener_ = std::move(listener);
}

void HangWatchdog::watch() {
  using Clock = std::chrono::steady_clock;
  const double tick_s = std::clamp(timeout_s_ / 20, 0.05, 0.5);
  auto last = Clock::now(), quiet_until = last;
  while (!stop_.load()) {
    std::this_thread::sleep_for(std::chrono::duration<double>(tick_s));
    const auto now = Clock::now();
    const double gap = std::chrono::duration<double>(now - last).count();
    last = now;
    // A tick that came seconds late means this whole process was suspended (SIGSTOP, a
    // debugger, a paused VM): its peers have timed out on it and name it; it is the missing
    // rank, not a witness. It keeps quiet for one more timeout, which the launcher's end of the
    // job usually cuts short.
    if (gap > tick_s + 1.0) {
      quiet_until = now + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(timeout_s_));
    }
    if (now < quiet_until) continue;
    const RankRecord me = own_record(heartbeat_.rank(), heartbeat_.host());
    if (me.pending_seq != 0 && me.pending_s >= timeout_s_) fire(me, "");
  }
}

void HangWatchdog::fire(const RankRecord& me, const std::string& cause) {
  // Only one report per process, whichever thread gets here first.
  static std::once_flag once;
  std::call_once(once, [&] {
    const auto table = heartbeat_.query(5.0);
    HangDiagnosis d = diagnose(me, table, timeout_s_, stale_after(heartbeat_.interval_s()),
                               heartbeat_.service_host(), heartbeat_.service_pid());
    if (!cause.empty()) {
      d.headline = "rank " + std::to_string(me.rank) + " (" + std::string(me.host) + ", pid " +
                   std::to_string(me.pid) + "): " + cause + ", " +
                   (me.step >= 0 ? "at step " + std::to_string(me.step) : "before step 1");
    }
    const std::string text = format_report(me.rank, d);
    std::fputs(text.c_str(), stderr);
    std::fflush(stderr);
    std::fflush(stdout);
    {
      const std::lock_guard<std::mutex> lock(listener_mu_);
      if (listener_) {
        try {
          listener_(me, d);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "train: rank %d: the hang report's listener failed: %s\n", me.rank,
                       e.what());
        }
      }
    }
    // The grace: the other ranks time out within a tick or two of this one and ask rank 0's
    // service too; the first rank to exit makes the launcher end the rest.
    std::this_thread::sleep_for(std::chrono::seconds(2));
  });
  std::_Exit(kExitCollectiveTimeout);
}

void report_backend_hang(const std::string& what) {
  HangWatchdog* w = nullptr;
  {
    const std::lock_guard<std::mutex> lock(g_mu);
    w = g_watchdog;
  }
  if (w == nullptr) return;
  RankRecord me = own_record(w->heartbeat_.rank(), w->heartbeat_.host());
  w->fire(me, what);
}

}  // namespace dpt::comm
