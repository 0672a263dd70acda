// What a run reports: JSON Lines metrics (one object per optimizer step) and a human progress
// line with rate and ETA. Both are written by rank 0 only.
#pragma once

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include "comm/hang_watchdog.h"
#include "trainer/json_record.h"
#include "trainer/training.h"

namespace dpt::trainer {

// One JSON object per line ([JSON lines]): per step {"step", "loss", "lr", "grad_norm", "tokens",
// "tokens_per_s", "step_ms", "data_wait_ms", "io_tokens_per_s", "comm_exposed_ms", "mfu"} (mfu
// null when no peak is known) (plus "skipped": true for a step with a non-finite loss or
// gradient, whose values print as null, and "ckpt_stall_ms" on a step that saved), {"step",
// "val_loss"} after each validation, and event lines ({"event": "resume" | "checkpoint" |
// "stop" | "hang", ...}). Lines are written whole: the hang event comes from the watchdog's
// thread while the training thread waits in a collective.
class MetricsWriter {
 public:
  // Opens (truncates) path; throws UsageError naming the path if it cannot. A run resumed
  // after step resumed_step (>= 0) keeps the file's lines up to that step (and drops a torn
  // last line) and appends.
  explicit MetricsWriter(const std::string& path, int64_t resumed_step = -1);
  void write(const StepRecord& r);
  // An event line, e.g. JsonRecord().add("event", "checkpoint").add("step", 40)...
  void write_event(const JsonRecord& fields);

 private:
  void put(const std::string& lines);  // writes and flushes
  std::mutex mu_;
  std::unique_ptr<FILE, int (*)(FILE*)> file_;
};

// The metrics line of a [Hang diagnosis] report: {"event": "hang", "step", "phase", "rank" (the
// reporter), "collective" (its #seq), "signature", "bytes", "waited_s", "missing",
// "disagrees", "behind", "silent" (rank lists), "service_answered", "summary"}.
JsonRecord hang_event(const comm::RankRecord& me, const comm::HangDiagnosis& d);

// "step 40/200 | loss 2.871234 | lr 9.76e-04 | norm 0.412 | 41.2k tok/s | 24.8 ms/step |
//  mfu 31.2% | comm wait 0.4 ms | data stall 0.02% | ETA 0:04", and a "step 40/200 | val_loss
//  2.9" line after validation.
class ProgressPrinter {
 public:
  ProgressPrinter(int log_every, FILE* out = stdout) : log_every_(log_every), out_(out) {}
  void on_step(const StepRecord& r);

 private:
  int log_every_;
  FILE* out_;
  double total_ms_ = 0;
  double stall_ms_ = 0;  // data_wait_ms summed: the stall share of all step time so far
  double timed_ms_ = 0;  // step time summed over steps after the first (warm-up excluded)
  int64_t timed_steps_ = 0;
  int64_t seen_ = 0;  // steps this process has run
};

std::string format_duration(double seconds);  // "1:02:03" or "4:05"

}  // namespace dpt::trainer
