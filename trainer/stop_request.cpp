// [Stop requests]: signal handlers that set flags, and the Slurm time-limit watch.
#include "trainer/stop_request.h"

#include <signal.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/errors.h"
#include "common/subprocess.h"

namespace dpt::trainer {

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

// How often rank 0 asks Slurm for the time left.
constexpr auto kRefresh = std::chrono::minutes(5);

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

std::string describe_stop(unsigned reasons, int preempt_signal, int64_t stop_before_limit) {
  std::string s;
  auto add = [&](const std::string& what) { s += (s.empty() ? "" : " and ") + what; };
  if (reasons & kStopTerm) add("SIGTERM");
  if (reasons & kStopPreempt) add(signal_name(preempt_signal) + " (--preempt-signal)");
  if (reasons & kStopTimeLimit)
    add("the job's time limit (--stop-before-limit " + std::to_string(stop_before_limit) + ")");
  return s;
}

std::optional<int64_t> parse_slurm_time_left(const std::string& raw) {
  std::string t;
  for (char ch : raw)
    if (!std::isspace(static_cast<unsigned char>(ch))) t += ch;
  if (t.empty() || t.find_first_not_of("0123456789-:") != std::string::npos) return std::nullopt;
  int64_t days = 0;
  const auto dash = t.find('-');
  if (dash != std::string::npos) {
    if (dash == 0 || t.find('-', dash + 1) != std::string::npos) return std::nullopt;
    days = std::atoll(t.substr(0, dash).c_str());
    t = t.substr(dash + 1);
  }
  // [[HH:]MM:]SS; with days, D-HH, D-HH:MM and D-HH:MM:SS (Slurm's time forms).
  int64_t parts[3] = {0, 0, 0};
  int n = 0;
  size_t at = 0;
  while (true) {
    const auto colon = t.find(':', at);
    const std::string field =
        t.substr(at, colon == std::string::npos ? std::string::npos : colon - at);
    if (field.empty() || n == 3) return std::nullopt;
    parts[n++] = std::atoll(field.c_str());
    if (colon == std::string::npos) break;
    at = colon + 1;
  }
  int64_t h = 0, m = 0, sec = 0;
  if (dash != std::string::npos && n == 1) {
    h = parts[0];
  } else if (dash != std::string::npos && n == 2) {  // D-HH:MM
    h = parts[0];
    m = parts[1];
  } else if (n == 1) {
    sec = parts[0];
  } else if (n == 2) {
    m = parts[0];
    sec = parts[1];
  } else {
    h = parts[0];
    m = parts[1];
    sec = parts[2];
  }
  if (m >= 60 || sec >= 60) return std::nullopt;
  return ((days * 24 + h) * 60 + m) * 60 + sec;
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
  if (refresher_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    refresher_.join();
  }
  ::sigaction(SIGTERM, &g_old_term, nullptr);
  if (preempt_signal_ != 0) ::sigaction(preempt_signal_, &g_old_preempt, nullptr);
}

void StopRequests::watch_time_limit(const std::string& job_id, int64_t margin_s,
                                    const std::function<void(const std::string&)>& say) {
  job_id_ = job_id;
  margin_s_ = margin_s;
  std::string text;
  const auto end = query_end(&text);
  if (!end) {
    say("warning: --stop-before-limit: the time left of job " + job_id_ + " is unknown (" + text +
        "); asking again every 5 minutes");
  } else if (*end == 0) {
    say("job " + job_id_ + " has no time limit: --stop-before-limit has no effect");
    return;
  } else {
    const int64_t left_s =
        (*end - std::chrono::steady_clock::now().time_since_epoch().count()) / 1000000000;
    if (left_s <= margin_s_) {
      say("warning: --stop-before-limit " + std::to_string(margin_s_) + " is not less than the " +
          std::to_string(left_s) + " s job " + job_id_ +
          " has left: ignored (each run would stop after one step); give the job a longer "
          "--time or a smaller margin");
      return;
    }
    say("job " + job_id_ + ": " + std::to_string(left_s) + " s left; stopping with a " +
        "checkpoint once " + std::to_string(margin_s_) + " s remain (--stop-before-limit)");
    end_ns_.store(*end);
  }
  refresher_ = std::thread([this] { refresh_loop(); });
}

std::optional<int64_t> StopRequests::query_end(std::string* text) const {
  const auto now = std::chrono::steady_clock::now();
  const CommandResult r = run_command({"squeue", "-h", "-j", job_id_, "-o", "%L"}, 30);
  std::string out = r.error.empty() ? r.output : r.error;
  while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back())))
    out.pop_back();
  *text = "squeue -o %L: " + (out.empty() ? std::string("no output") : out);
  if (r.exit_code != 0) return std::nullopt;
  if (out == "UNLIMITED") return 0;
  const auto left = parse_slurm_time_left(out);
  if (!left) return std::nullopt;
  return (now + std::chrono::seconds(*left)).time_since_epoch().count();
}

void StopRequests::refresh_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, kRefresh, [this] { return stopping_; })) {
    lock.unlock();
    std::string text;
    const auto end = query_end(&text);
    if (end) end_ns_.store(*end);  // a failed query keeps the last known end
    lock.lock();
  }
}

unsigned StopRequests::poll() {
  const int64_t end = end_ns_.load(std::memory_order_relaxed);
  if (end != 0) {
    const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (end - now <= margin_s_ * 1000000000)
      g_requests.fetch_or(kStopTimeLimit, std::memory_order_relaxed);
  }
  return g_requests.load(std::memory_order_relaxed);
}

}  // namespace dpt::trainer
