// MonitoredCommunicator: the [Flight recorder] around another communicator's collectives.
#include "comm/monitored_communicator.h"

#include <memory>
#include <numeric>

namespace dpt::comm {

namespace {

// Leaves the recorder when the scope ends, thrown through or not: a collective that failed is
// no longer one the process waits in.
class Entered {
 public:
  explicit Entered(const CollectiveSignature& sig) : seq_(FlightRecorder::get().enter(sig)) {}
  ~Entered() {
    if (seq_ != 0) FlightRecorder::get().leave(seq_);
  }
  Entered(const Entered&) = delete;
  Entered& operator=(const Entered&) = delete;
  uint64_t release() {
    const uint64_t s = seq_;
    seq_ = 0;
    return s;
  }

 private:
  uint64_t seq_;
};

// A request in flight: completes the record when the wrapped request completes.
class MonitoredPending final : public PendingCollective {
 public:
  MonitoredPending(Request inner, uint64_t seq) : inner_(std::move(inner)), seq_(seq) {}
  ~MonitoredPending() override {
    // Request's destructor waits for an unfinished collective; the record follows it.
    inner_ = Request();
    finish();
  }
  bool test() override {
    if (!inner_.test()) return false;
    finish();
    return true;
  }
  void wait() override {
    try {
      inner_.wait();
    } catch (...) {
      finish();
      throw;
    }
    finish();
  }

 private:
  void finish() {
    if (seq_ != 0) FlightRecorder::get().leave(seq_);
    seq_ = 0;
  }
  Request inner_;
  uint64_t seq_;
};

CollectiveSignature sig(CollectiveKind kind, size_t count, DType dtype, ReduceOp op = {}) {
  return {kind, dtype, op, static_cast<uint64_t>(count) * dtype_size(dtype)};
}

size_t total(std::span<const size_t> counts) {
  return std::accumulate(counts.begin(), counts.end(), size_t{0});
}

}  // namespace

void MonitoredCommunicator::follow_sent() {
  const uint64_t now = inner_.bytes_sent();
  count_sent(now - inner_sent_);
  inner_sent_ = now;
}

Request MonitoredCommunicator::monitored(Request inner, uint64_t seq) {
  follow_sent();
  if (inner.done()) {
    FlightRecorder::get().leave(seq);
    return inner;
  }
  return Request(std::make_unique<MonitoredPending>(std::move(inner), seq));
}

void MonitoredCommunicator::all_reduce(void* buf, size_t count, DType dtype, ReduceOp op) {
  const Entered e(sig(CollectiveKind::all_reduce, count, dtype, op));
  inner_.all_reduce(buf, count, dtype, op);
  follow_sent();
}

void MonitoredCommunicator::broadcast(void* buf, size_t count, DType dtype, int root) {
  const Entered e(sig(CollectiveKind::broadcast, count, dtype));
  inner_.broadcast(buf, count, dtype, root);
  follow_sent();
}

void MonitoredCommunicator::all_gather(const void* send, void* recv, size_t count, DType dtype) {
  const Entered e(
      sig(CollectiveKind::all_gather, count * static_cast<size_t>(world_size()), dtype));
  inner_.all_gather(send, recv, count, dtype);
  follow_sent();
}

void MonitoredCommunicator::barrier() {
  const Entered e(sig(CollectiveKind::barrier, 0, DType::u8));
  inner_.barrier();
}

Request MonitoredCommunicator::iall_reduce(void* buf, size_t count, DType dtype, ReduceOp op) {
  Entered e(sig(CollectiveKind::all_reduce, count, dtype, op));
  Request r = inner_.iall_reduce(buf, count, dtype, op);
  return monitored(std::move(r), e.release());
}

Request MonitoredCommunicator::ireduce_scatter_v(const void* send, void* recv,
                                                 std::span<const size_t> counts, DType dtype,
                                                 ReduceOp op) {
  Entered e(sig(CollectiveKind::reduce_scatter, total(counts), dtype, op));
  Request r = inner_.ireduce_scatter_v(send, recv, counts, dtype, op);
  return monitored(std::move(r), e.release());
}

Request MonitoredCommunicator::iall_gather_v(const void* send, void* recv,
                                             std::span<const size_t> counts, DType dtype) {
  Entered e(sig(CollectiveKind::all_gather_v, total(counts), dtype));
  Request r = inner_.iall_gather_v(send, recv, counts, dtype);
  return monitored(std::move(r), e.release());
}

}  // namespace dpt::comm
