// The timeline of this process for `train --trace`: spans of named work on tracks (threads and
// streams), recorded while a window of steps is traced and written by the trainer as Chrome
// trace-event JSON (trainer/trace_file.h).
//
// [Timeline] A span is a name, a track, a start and an end on this host's steady clock, and up
// to three integer arguments. Every layer may record spans (the trainer's steps and blocks, the
// communication buckets, the checkpoint writer, the I/O thread): recording is off outside the
// traced window, where a Span costs one relaxed atomic load. Names are string literals, with
// at most one "%d" filled from `index` when the file is written, so recording allocates nothing
// beyond the event buffer, which is reserved up front. In a CUDA build every Span is also an
// NVTX range of the same name on its thread, for Nsight Systems, whether or not --trace is on.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace dpt::trace {

// Tracks become Chrome trace "threads" (tid) of a rank's "process" (pid = rank).
enum class Track : int {
  compute = 1,            // the training loop's thread
  comm = 2,               // collectives in flight, issue to completion (async spans)
  checkpoint_writer = 3,  // the background checkpoint writer
  io = 4,                 // the data reader's I/O thread
  gpu_compute = 5,        // the compute stream, from CUDA events
  gpu_comm = 6,           // the NCCL stream, from CUDA events
};
const char* track_name(Track t);

struct Arg {
  const char* key = nullptr;  // a string literal; null: unused
  int64_t value = 0;
};

struct Event {
  const char* name = "";  // a string literal, "%d" at most once (filled from index)
  int index = -1;
  Track track = Track::compute;
  // 'X': a complete span on one thread; 'b'/'e': the start and end of an async span (spans that
  // overlap on one track, such as buckets in flight), paired by name and id.
  char phase = 'X';
  int64_t id = 0;
  int64_t start_ns = 0;  // steady clock
  int64_t dur_ns = 0;    // 'X' only
  Arg args[3];
};

int64_t now_ns();  // the steady clock the spans use

// The process's recorder. Thread-safe; recording is switched on and off by the training loop.
class Recorder {
 public:
  static Recorder& get();

  bool recording() const { return recording_.load(std::memory_order_relaxed); }
  void set_recording(bool on) { recording_.store(on, std::memory_order_relaxed); }
  // Reserves room for this many events (the step loop then does not allocate while recording).
  void reserve(size_t events);

  void add(const Event& e);
  // The recorded events, and an empty recorder.
  std::vector<Event> take();

 private:
  std::atomic<bool> recording_{false};
  std::mutex mu_;
  std::vector<Event> events_;
};

inline bool recording() {
  return Recorder::get().recording();
}

// A complete span from construction to destruction on the calling thread's `track`.
class Span {
 public:
  explicit Span(const char* name, Track track = Track::compute, int index = -1)
      : Span(name, track, index, recording()) {}
  // Recorded when `record` (the recording state when the work was started elsewhere).
  Span(const char* name, Track track, int index, bool record);
  ~Span();
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;
  // Adds an argument (up to three; more are dropped).
  Span& arg(const char* key, int64_t value);

 private:
  Event e_;
  bool on_;
  int nargs_ = 0;
};

// An async span (overlapping others on its track): begin() at issue, end() at completion, with
// the same name, index and id.
void async_begin(const char* name, int index, Track track, int64_t id, Arg a0 = {}, Arg a1 = {},
                 Arg a2 = {});
void async_end(const char* name, int index, Track track, int64_t id);

// A span whose times were measured elsewhere (CUDA events converted to this clock).
void complete(const char* name, int index, Track track, int64_t start_ns, int64_t end_ns,
              Arg a0 = {});

}  // namespace dpt::trace
