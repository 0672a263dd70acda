// [Timeline] recording, and the NVTX ranges of a CUDA build.
#include "common/trace.h"

#include <chrono>
#include <cstdio>
#include <utility>

#ifdef DPT_HAVE_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

namespace dpt::trace {

const char* track_name(Track t) {
  switch (t) {
    case Track::compute:
      return "compute";
    case Track::comm:
      return "comm";
    case Track::checkpoint_writer:
      return "checkpoint writer";
    case Track::io:
      return "io";
    case Track::gpu_compute:
      return "gpu compute stream";
    case Track::gpu_comm:
      return "gpu nccl stream";
  }
  return "?";
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Recorder& Recorder::get() {
  static Recorder r;
  return r;
}

void Recorder::reserve(size_t events) {
  std::lock_guard<std::mutex> lock(mu_);
  events_.reserve(events);
}

void Recorder::add(const Event& e) {
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back(e);
}

std::vector<Event> Recorder::take() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Event> out;
  out.reserve(events_.capacity());  // the next window records without allocating either
  std::swap(out, events_);
  return out;
}

Span::Span(const char* name, Track track, int index, bool record) : on_(record) {
#ifdef DPT_HAVE_NVTX
  char text[96];
  std::snprintf(text, sizeof(text), name, index);
  nvtxRangePushA(text);
#endif
  if (!on_) return;
  e_.name = name;
  e_.index = index;
  e_.track = track;
  e_.start_ns = now_ns();
}

Span::~Span() {
#ifdef DPT_HAVE_NVTX
  nvtxRangePop();
#endif
  if (!on_) return;
  e_.dur_ns = now_ns() - e_.start_ns;
  Recorder::get().add(e_);
}

Span& Span::arg(const char* key, int64_t value) {
  if (on_ && nargs_ < 3) e_.args[nargs_++] = Arg{key, value};
  return *this;
}

namespace {
Event event(const char* name, int index, Track track, char phase, int64_t start_ns) {
  Event e;
  e.name = name;
  e.index = index;
  e.track = track;
  e.phase = phase;
  e.start_ns = start_ns;
  return e;
}
}  // namespace

void async_begin(const char* name, int index, Track track, int64_t id, Arg a0, Arg a1, Arg a2) {
  if (!recording()) return;
  Event e = event(name, index, track, 'b', now_ns());
  e.id = id;
  e.args[0] = a0;
  e.args[1] = a1;
  e.args[2] = a2;
  Recorder::get().add(e);
}

void async_end(const char* name, int index, Track track, int64_t id) {
  if (!recording()) return;
  Event e = event(name, index, track, 'e', now_ns());
  e.id = id;
  Recorder::get().add(e);
}

void complete(const char* name, int index, Track track, int64_t start_ns, int64_t end_ns, Arg a0) {
  if (!recording()) return;
  Event e = event(name, index, track, 'X', start_ns);
  e.dur_ns = end_ns - start_ns;
  e.args[0] = a0;
  Recorder::get().add(e);
}

}  // namespace dpt::trace
