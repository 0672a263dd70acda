// [Stop requests]: signal handlers that set flags; the time limit through time_limit.h.
#include "job/stop_request.h"

#include <signal.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/errors.h"
#include "job/nodes.h"

namespace dpt::job {

namespace {

// Written by the handlers: lock-free, so async-signal-safe.
std::atomic<unsigned> g_requests{0};
static_assert(std::atomic<unsigned>::is_always_lock_free);
struct sigaction g_old_preempt {
}, g_old_term{};

extern "C" void on_stop_signal(int sig) {
  const unsigned bit = sig == SIGTERM ? kStopTerm : kStopPreempt;
  const unsigned before = g_requests.fetch_or(bit, std::memory_order_relaxed);
  if (sig == SIGTERM && (before & kStopTerm)) {
    // A second SIGTERM: whoever sends it wants the process gone (a rank stuck where the stop
    // cannot reach it, e.g. in a collective with a dead peer). Default action, at once.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(SIGTERM, &dfl, nullptr);
    ::raise(SIGTERM);
  }
}

struct Named {
  const char* name;
  int sig;
};
constexpr Named kSignals[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"INT", SIGINT},
                              {"HUP", SIGHUP},   {"ALRM", SIGALRM}, {"TERM", SIGTERM}};

}  // namespace

int signal_number(const std::string& text) {
  if (text == "none") return 0;
  std::string name = text;
  for (char& ch : name)
    ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  int sig = 0;
  for (const Named& n : kSignals)
    if (name == n.name) sig = n.sig;
  if (sig == 0 && !name.empty() && name.find_first_not_of("0123456789") == std::string::npos) {
    const int num = std::atoi(name.c_str());
    for (const Named& n : kSignals)
      if (num == n.sig) sig = num;
  }
  if (sig == SIGTERM)
    throw UsageError("--preempt-signal " + text +
                     ": SIGTERM always stops the run with a checkpoint and no requeue; pick "
                     "another signal for preemption (USR2, as '#SBATCH --signal=USR2@120' sends)");
  if (sig == 0)
    throw UsageError("--preempt-signal " + text +
                     " is not a signal this option takes: use USR1, USR2, INT, HUP, ALRM (with "
                     "or without SIG, or the number), or 'none'");
  return sig;
}

std::string signal_name(int sig) {
  for (const Named& n : kSignals)
    if (n.sig == sig) return std::string("SIG") + n.name;
  return "signal " + std::to_string(sig);
}

std::string describe_stop(unsigned reasons, int preempt_signal, int64_t stop_before_limit_s) {
  std::string s;
  auto add = [&](const std::string& what) { s += (s.empty() ? "" : " and ") + what; };
  if (reasons & kStopTerm) add("SIGTERM");
  if (reasons & kStopPreempt) add(signal_name(preempt_signal) + " (--preempt-signal)");
  if (reasons & kStopTimeLimit)
    add("the job's time limit (--stop-before-limit " + std::to_string(stop_before_limit_s) + ")");
  return s;
}

std::string describe_signal_reach(unsigned reasons, int preempt_signal,
                                  const std::vector<unsigned>& own_requests,
                                  const std::vector<std::string>& hosts) {
  std::string what;
  for (const unsigned bit : {kStopTerm, kStopPreempt}) {
    if ((reasons & bit) == 0) continue;
    std::vector<int> missed;
    for (size_t r = 0; r < own_requests.size(); ++r)
      if ((own_requests[r] & bit) == 0) missed.push_back(static_cast<int>(r));
    const std::string name = bit == kStopTerm ? "SIGTERM" : signal_name(preempt_signal);
    const size_t n = own_requests.size();
    std::string s = name + " reached ";
    if (missed.empty()) {
      s += "all " + std::to_string(n) + " ranks";
    } else {
      s += std::to_string(n - missed.size()) + " of " + std::to_string(n) + " ranks; the others (" +
           ranks_by_host(hosts, missed) + ") stopped by the agreement";
    }
    what += (what.empty() ? "" : "; ") + s;
  }
  return what;
}

StopRequests::StopRequests(int preempt_signal) : preempt_signal_(preempt_signal) {
  g_requests.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a signal must not fail a read, a write or a wait in progress
  DPT_CHECK_POSIX(::sigaction(SIGTERM, &sa, &g_old_term));
  if (preempt_signal != 0) DPT_CHECK_POSIX(::sigaction(preempt_signal, &sa, &g_old_preempt));
}

StopRequests::~StopRequests() {
  ::sigaction(SIGTERM, &g_old_term, nullptr);
  if (preempt_signal_ != 0) ::sigaction(preempt_signal_, &g_old_preempt, nullptr);
}

unsigned StopRequests::poll() {
  if (time_limit_.due()) g_requests.fetch_or(kStopTimeLimit, std::memory_order_relaxed);
  return g_requests.load(std::memory_order_relaxed);
}

}  // namespace dpt::job
