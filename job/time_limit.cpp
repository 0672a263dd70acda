// The Slurm time-limit watch of [Stop requests]: squeue's time left, read again every few minutes.
#include "job/time_limit.h"

#include <cctype>
#include <cstdlib>

#include "common/subprocess.h"

namespace dpt::job {

namespace {
// How often rank 0 asks Slurm for the time left.
constexpr auto kRefresh = std::chrono::minutes(5);
}  // namespace

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

TimeLimitWatch::~TimeLimitWatch() {
  if (!refresher_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  refresher_.join();
}

void TimeLimitWatch::start(const std::string& job_id, int64_t margin_s,
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

std::optional<int64_t> TimeLimitWatch::query_end(std::string* text) const {
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

void TimeLimitWatch::refresh_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, kRefresh, [this] { return stopping_; })) {
    lock.unlock();
    std::string text;
    const auto end = query_end(&text);
    if (end) end_ns_.store(*end);  // a failed query keeps the last known end
    lock.lock();
  }
}

bool TimeLimitWatch::due() const {
  const int64_t end = end_ns_.load(std::memory_order_relaxed);
  if (end == 0) return false;
  const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  return end - now <= margin_s_ * 1000000000;
}

}  // namespace dpt::job
