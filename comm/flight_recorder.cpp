// [Flight recorder]: sequence numbers, signatures and the training loop's position.
#include "comm/flight_recorder.h"

#include <algorithm>
#include <cstdio>

namespace dpt::comm {

const char* collective_kind_name(CollectiveKind k) {
  switch (k) {
    case CollectiveKind::none:
      return "none";
    case CollectiveKind::all_reduce:
      return "all_reduce";
    case CollectiveKind::broadcast:
      return "broadcast";
    case CollectiveKind::all_gather:
      return "all_gather";
    case CollectiveKind::barrier:
      return "barrier";
    case CollectiveKind::reduce_scatter:
      return "reduce_scatter";
    case CollectiveKind::all_gather_v:
      return "all_gather_v";
  }
  return "unknown";
}

namespace {
std::string bytes_text(uint64_t b) {
  char buf[48];
  if (b < 10000) {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(b));
  } else if (b < 10000000) {
    std::snprintf(buf, sizeof(buf), "%.1f KB", b / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f MB", b / 1e6);
  }
  return buf;
}
}  // namespace

std::string CollectiveSignature::text() const {
  if (kind == CollectiveKind::barrier) return "barrier";
  std::string s = std::string(collective_kind_name(kind)) + "(" + dtype_name(dtype);
  if (reduces()) s += std::string(" ") + reduce_op_name(op);
  return s + ", " + bytes_text(bytes) + ")";
}

FlightRecorder& FlightRecorder::get() {
  static FlightRecorder r;
  return r;
}

FlightRecorder::FlightRecorder() : t0_(std::chrono::steady_clock::now()), ring_(kHistory) {
  in_flight_.reserve(64);
}

double FlightRecorder::now_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

uint64_t FlightRecorder::enter(const CollectiveSignature& sig) {
  const std::lock_guard<std::mutex> lock(mu_);
  const double t = now_s();
  Entry e;
  e.seq = ++entered_;
  e.sig = sig;
  e.step = step_;
  e.issued_s = t;
  ring_[e.seq % kHistory] = e;
  in_flight_.push_back(e);
  last_event_ = t;
  return e.seq;
}

void FlightRecorder::leave(uint64_t seq) {
  const std::lock_guard<std::mutex> lock(mu_);
  const double t = now_s();
  const auto it = std::find_if(in_flight_.begin(), in_flight_.end(),
                               [&](const Entry& e) { return e.seq == seq; });
  if (it == in_flight_.end()) return;
  in_flight_.erase(it);
  ++completed_;
  Entry& slot = ring_[seq % kHistory];
  if (slot.seq == seq) slot.completed_s = t;
  last_event_ = t;
}

void FlightRecorder::set_step(int64_t step) {
  const std::lock_guard<std::mutex> lock(mu_);
  step_ = step;
}

void FlightRecorder::set_phase(const char* phase) {
  const std::lock_guard<std::mutex> lock(mu_);
  if (phase_ == phase) return;
  phase_ = phase;
  phase_since_ = now_s();
}

const char* FlightRecorder::phase() const {
  const std::lock_guard<std::mutex> lock(mu_);
  return phase_;
}

ActivitySnapshot FlightRecorder::snapshot() const {
  const std::lock_guard<std::mutex> lock(mu_);
  const double t = now_s();
  ActivitySnapshot s;
  s.entered = entered_;
  s.completed = completed_;
  if (!in_flight_.empty()) {
    // In issue order: the first is the oldest.
    const Entry& e = in_flight_.front();
    s.pending_seq = e.seq;
    s.pending = e.sig;
    s.pending_s = t - e.issued_s;
  }
  s.step = step_;
  s.phase = phase_;
  s.phase_s = t - phase_since_;
  s.since_last_s = t - last_event_;
  return s;
}

std::vector<FlightRecorder::Entry> FlightRecorder::history() const {
  const std::lock_guard<std::mutex> lock(mu_);
  std::vector<Entry> out;
  const uint64_t first = entered_ >= kHistory ? entered_ - kHistory + 1 : 1;
  for (uint64_t seq = first; seq <= entered_; ++seq)
    out.push_back(ring_[seq % kHistory]);
  return out;
}

void FlightRecorder::reset() {
  const std::lock_guard<std::mutex> lock(mu_);
  entered_ = completed_ = 0;
  ring_.assign(kHistory, Entry{});
  in_flight_.clear();
  step_ = -1;
  phase_ = "start";
  phase_since_ = last_event_ = now_s();
}

PhaseScope::PhaseScope(const char* phase) : before_(FlightRecorder::get().phase()) {
  FlightRecorder::get().set_phase(phase);
}

PhaseScope::~PhaseScope() {
  FlightRecorder::get().set_phase(before_);
}

}  // namespace dpt::comm
