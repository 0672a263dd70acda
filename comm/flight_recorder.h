// What this process is doing, for the hang report ([Hang diagnosis] in comm/hang_watchdog.h):
// the collectives it has entered and completed, numbered in call order, and the training
// loop's step and phase. Written by the thread that issues collectives, read by the watchdog
// and heartbeat threads.
//
// [Flight recorder] Every collective through a MonitoredCommunicator gets the next sequence
// number of the process at issue, so ranks that call the same collectives in the same order
// ([Collective contract]) give each one the same number; a collective's signature (kind,
// dtype, op, bytes) is recorded with it. The numbers are what the hang report compares across
// ranks: a rank whose oldest collective in flight has the same number but another signature,
// or a rank that is past it, disagrees; a rank that has not reached it is missing or slow. The
// last kHistory collectives are kept for the report. One mutex guards it all: a collective
// costs microseconds at least, the lock tens of nanoseconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "comm/communicator.h"

namespace dpt::comm {

enum class CollectiveKind : uint8_t {
  none = 0,
  all_reduce,
  broadcast,
  all_gather,
  barrier,
  reduce_scatter,
  all_gather_v,
};
const char* collective_kind_name(CollectiveKind k);

// A collective as a rank called it. `op` is meaningful for reductions only.
struct CollectiveSignature {
  CollectiveKind kind = CollectiveKind::none;
  DType dtype = DType::u8;
  ReduceOp op = ReduceOp::sum;
  uint64_t bytes = 0;  // this rank's buffer: the reduced or gathered whole
  bool operator==(const CollectiveSignature& o) const {
    return kind == o.kind && dtype == o.dtype && (op == o.op || !reduces()) && bytes == o.bytes;
  }
  bool reduces() const {
    return kind == CollectiveKind::all_reduce || kind == CollectiveKind::reduce_scatter;
  }
  // "all_reduce(f32 avg, 1.2 MB)"
  std::string text() const;
};

// What a process was doing at one moment: the snapshot the watchdog and heartbeat send.
struct ActivitySnapshot {
  uint64_t entered = 0;         // collectives issued so far (the last one's number)
  uint64_t completed = 0;       // collectives completed so far
  uint64_t pending_seq = 0;     // the oldest collective in flight (0: none)
  CollectiveSignature pending;  // and its signature
  double pending_s = 0;         // how long it has been in flight
  int64_t step = -1;            // the training loop's step (-1: before the first)
  const char* phase = "start";  // a string literal: "forward/backward", "validation", ...
  double phase_s = 0;           // how long the phase has lasted
  double since_last_s = 0;      // since the last collective was issued or completed
};

class FlightRecorder {
 public:
  // The process's recorder: the collectives of every monitored communicator share one count,
  // made in the same order on every rank.
  static FlightRecorder& get();

  uint64_t enter(const CollectiveSignature& sig);  // returns the collective's number
  void leave(uint64_t seq);
  // The training loop's position; `phase` must be a string literal (its pointer is kept).
  void set_step(int64_t step);
  void set_phase(const char* phase);
  const char* phase() const;

  ActivitySnapshot snapshot() const;

  struct Entry {
    uint64_t seq = 0;
    CollectiveSignature sig;
    int64_t step = -1;
    double issued_s = 0;      // seconds since the recorder started
    double completed_s = -1;  // -1: still in flight
  };
  static constexpr size_t kHistory = 16;
  // The last kHistory collectives, oldest first.
  std::vector<Entry> history() const;

  // Tests: forgets everything.
  void reset();

 private:
  FlightRecorder();
  double now_s() const;

  mutable std::mutex mu_;
  std::chrono::steady_clock::time_point t0_;
  uint64_t entered_ = 0, completed_ = 0;
  std::vector<Entry> ring_;  // kHistory entries, indexed by seq % kHistory
  std::vector<Entry> in_flight_;
  int64_t step_ = -1;
  const char* phase_ = "start";
  double phase_since_ = 0, last_event_ = 0;
};

// Sets the recorder's phase for a scope and restores the one before at its end.
class PhaseScope {
 public:
  explicit PhaseScope(const char* phase);
  ~PhaseScope();
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  const char* before_;
};

}  // namespace dpt::comm
