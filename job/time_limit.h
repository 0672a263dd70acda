// The time-limit part of [Stop requests]: rank 0 reads the Slurm job's time left (squeue) and
// says when only the margin remains.
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

namespace dpt::job {

// Slurm's time-left text ("45", "12:34", "1:02:03", "2-03", "2-03:04", "2-03:04:05") in seconds;
// nullopt for no limit or text it cannot read.
std::optional<int64_t> parse_slurm_time_left(const std::string& text);

class TimeLimitWatch {
 public:
  TimeLimitWatch() = default;  // watches nothing until start()
  ~TimeLimitWatch();
  TimeLimitWatch(const TimeLimitWatch&) = delete;
  TimeLimitWatch& operator=(const TimeLimitWatch&) = delete;

  // Rank 0 of a Slurm job: watch for the moment at most margin_s seconds of the job are left. Reads
  // the time left now (reported through `say`), then again every 5 minutes on a thread of its own
  // (an administrator may extend the limit), so a slow squeue never holds up a step. A limit
  // that leaves no more than margin_s at the start is reported and not watched: every run
  // would stop after one step.
  void start(const std::string& job_id, int64_t margin_s,
             const std::function<void(const std::string&)>& say);

  // True once at most margin_s seconds are left.
  bool due() const;

 private:
  // The job's end on the steady clock, in ns since its epoch (0: unknown or none); nullopt
  // when squeue did not answer. `text` says what was found.
  std::optional<int64_t> query_end(std::string* text) const;
  void refresh_loop();

  std::string job_id_;
  int64_t margin_s_ = 0;
  std::atomic<int64_t> end_ns_{0};
  std::thread refresher_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
};

}  // namespace dpt::job
