// JSON Lines metrics and the progress line.
#include "trainer/metrics.h"

#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include <iterator>

#include "common/errors.h"
#include "storage/durable.h"

namespace dpt::trainer {

using storage::write_file_atomic;

namespace {
// The step a metrics line belongs to: the number after its first "step" key, or -1. Read as text,
// so that lines of any build (older ones did not escape paths) keep their place.
int64_t step_of_line(const std::string& line) {
  const auto at = line.find("\"step\": ");
  if (at == std::string::npos) return -1;
  return std::strtoll(line.c_str() + at + 8, nullptr, 10);
}
}  // namespace

MetricsWriter::MetricsWriter(const std::string& path, int64_t resumed_step)
    : file_(nullptr, &std::fclose) {
  if (resumed_step >= 0) {
    // The run that saved the checkpoint may have logged steps past it before it died: they
    // are dropped, so the file reads as one run; rewritten atomically.
    // A last line without its newline is the torn write of a run killed while writing it.
    std::ifstream in(path, std::ios::binary);
    if (in) {
      const std::string text((std::istreambuf_iterator<char>(in)), {});
      std::string kept;
      for (size_t at = 0, end; (end = text.find('\n', at)) != std::string::npos; at = end + 1) {
        const std::string line = text.substr(at, end - at);
        if (step_of_line(line) <= resumed_step) kept += line + "\n";
      }
      std::string why;
      if (!write_file_atomic(path, kept, &why))
        throw UsageError("--metrics " + path + ": " + why +
                         ". Check that the directory is writable.");
    }
  }
  file_.reset(std::fopen(path.c_str(), resumed_step >= 0 ? "a" : "w"));
  if (!file_) {
    throw UsageError("--metrics " + path + ": cannot open for writing: " + errno_string(errno) +
                     ". Check that the directory exists and is writable.");
  }
}

void MetricsWriter::write(const StepRecord& r) {
  JsonRecord rec;
  rec.add("step", r.step)
      .add("loss", r.loss)
      .add("lr", r.lr)
      .add("grad_norm", r.grad_norm)
      .add("tokens", r.tokens)
      .add("tokens_per_s", r.tokens_per_s)
      .add("step_ms", r.step_ms)
      .add("data_wait_ms", r.data_wait_ms)
      .add("io_tokens_per_s", r.io_tokens_per_s)
      .add("comm_exposed_ms", r.comm_exposed_ms)
      .add("mfu", r.mfu)
      .add("mem_state_bytes", r.mem_state_bytes)
      .add("mem_peak_bytes", r.mem_peak_bytes)
      .add("sent_bytes", r.sent_bytes);
  if (r.skipped) rec.add("skipped", true);
  if (r.saved) rec.add("ckpt_stall_ms", r.ckpt_stall_ms);
  if (r.ckpt_failed_step >= 0) rec.add("ckpt_failed_step", r.ckpt_failed_step);
  std::string lines = rec.text() + "\n";
  if (r.has_val) {
    JsonRecord val;
    val.add("step", r.step).add("val_loss", r.val_loss);
    if (std::isfinite(r.val_accuracy)) val.add("val_accuracy", r.val_accuracy);
    if (std::isfinite(r.val_rmse)) val.add("val_rmse", r.val_rmse);
    lines += val.text() + "\n";
  }
  if (!r.confusion.empty()) {
    const size_t K = static_cast<size_t>(std::llround(std::sqrt(double(r.confusion.size()))));
    boost::json::array matrix;
    for (size_t i = 0; i < K; ++i)
      matrix.emplace_back(
          boost::json::array(r.confusion.begin() + i * K, r.confusion.begin() + (i + 1) * K));
    lines += JsonRecord()
                 .add("event", "confusion")
                 .add("step", r.step)
                 .add("rows", "true class")
                 .add("columns", "predicted class")
                 .add("matrix", matrix)
                 .text() +
             "\n";
  }
  put(lines);
}

void MetricsWriter::write_event(const JsonRecord& fields) {
  put(fields.text() + "\n");
}

void MetricsWriter::put(const std::string& lines) {
  const std::lock_guard<std::mutex> lock(mu_);
  std::fputs(lines.c_str(), file_.get());
  std::fflush(file_.get());
}

JsonRecord hang_event(const comm::RankRecord& me, const comm::HangDiagnosis& d) {
  boost::json::array missing, disagrees, behind, silent;
  for (const comm::PeerFinding& f : d.peers) {
    switch (f.state) {
      case comm::PeerState::missing:
        missing.push_back(f.rank);
        break;
      case comm::PeerState::disagrees:
        disagrees.push_back(f.rank);
        break;
      case comm::PeerState::behind:
        behind.push_back(f.rank);
        break;
      case comm::PeerState::silent:
        silent.push_back(f.rank);
        break;
      case comm::PeerState::with_us:
        break;
    }
  }
  return JsonRecord()
      .add("event", "hang")
      .add("step", me.step)
      .add("phase", std::string(me.phase, strnlen(me.phase, sizeof(me.phase))))
      .add("rank", me.rank)
      .add("collective", me.pending_seq)
      .add("signature", me.pending_signature().text())
      .add("bytes", me.pending_bytes)
      .add("waited_s", me.pending_s)
      .add("missing", missing)
      .add("disagrees", disagrees)
      .add("behind", behind)
      .add("silent", silent)
      .add("service_answered", d.service_answered)
      .add("summary", d.summary);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  char buf[64];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%" PRId64 ":%02d:%02d", s / 3600,
                  static_cast<int>((s / 60) % 60), static_cast<int>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%d:%02d", static_cast<int>(s / 60), static_cast<int>(s % 60));
  }
  return buf;
}

void ProgressPrinter::on_step(const StepRecord& r) {
  total_ms_ += r.step_ms;
  if (seen_++ > 0) {  // the first step of a process warms up: not in the mean
    timed_ms_ += r.step_ms;
    ++timed_steps_;
  }
  stall_ms_ += r.data_wait_ms;
  const bool last = r.step == r.total_steps;
  if (r.has_val) {
    char extra[64] = "";
    if (std::isfinite(r.val_accuracy))
      std::snprintf(extra, sizeof(extra), " | val_accuracy %.2f%%", 100.0 * r.val_accuracy);
    if (std::isfinite(r.val_rmse))
      std::snprintf(extra, sizeof(extra), " | val_rmse %.6g", r.val_rmse);
    std::fprintf(out_, "step %" PRId64 "/%" PRId64 " | val_loss %.6f%s\n", r.step, r.total_steps,
                 r.val_loss, extra);
  }
  if (r.skipped) {
    std::fprintf(out_,
                 "step %" PRId64 "/%" PRId64
                 " | loss %.6g | grad norm %.6g | not finite: update skipped\n",
                 r.step, r.total_steps, r.loss, r.grad_norm);
    std::fflush(out_);
    return;
  }
  if (!(seen_ == 1 || last || r.step % log_every_ == 0)) return;
  const double mean_ms = timed_steps_ > 0 ? timed_ms_ / timed_steps_ : r.step_ms;
  const double eta_s = mean_ms * static_cast<double>(r.total_steps - r.step) / 1000.0;
  const double tps = mean_ms > 0 ? r.tokens_per_s * r.step_ms / mean_ms : r.tokens_per_s;
  char mfu[32] = "";
  if (std::isfinite(r.mfu)) std::snprintf(mfu, sizeof(mfu), " | mfu %.1f%%", 100.0 * r.mfu);
  std::fprintf(out_,
               "step %" PRId64 "/%" PRId64
               " | loss %.6f | lr %.2e | norm %.3f | %.1fk tok/s | "
               "%.1f ms/step%s | comm wait %.1f ms | data stall %.2f%% | %s %s\n",
               r.step, r.total_steps, r.loss, r.lr, r.grad_norm, tps / 1000.0, mean_ms, mfu,
               r.comm_exposed_ms, total_ms_ > 0 ? 100.0 * stall_ms_ / total_ms_ : 0.0,
               last ? "done in" : "ETA",
               format_duration(last ? total_ms_ / 1000.0 : eta_s).c_str());
  std::fflush(out_);
}

}  // namespace dpt::trainer
