// A communicator that records every collective of the one it wraps in the [Flight recorder]:
// numbered at issue, completed when the call returns (blocking) or the request completes
// (non-blocking). The hang watchdog reads the record; the collectives themselves are the
// wrapped backend's, untouched.
#pragma once

#include <string>

#include "comm/communicator.h"
#include "comm/flight_recorder.h"

namespace dpt::comm {

class MonitoredCommunicator final : public Communicator {
 public:
  explicit MonitoredCommunicator(Communicator& inner) : inner_(inner) {}

  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  std::string backend() const override { return inner_.backend(); }

  void all_reduce(void* buf, size_t count, DType dtype, ReduceOp op) override;
  void broadcast(void* buf, size_t count, DType dtype, int root) override;
  void all_gather(const void* send, void* recv, size_t count, DType dtype) override;
  void barrier() override;
  Request iall_reduce(void* buf, size_t count, DType dtype, ReduceOp op) override;
  Request ireduce_scatter_v(const void* send, void* recv, std::span<const size_t> counts,
                            DType dtype, ReduceOp op) override;
  Request iall_gather_v(const void* send, void* recv, std::span<const size_t> counts,
                        DType dtype) override;

  Communicator& inner() { return inner_; }

 private:
  // [Bytes sent]: the wrapped communicator counts; this one follows it.
  void follow_sent();
  Request monitored(Request inner, uint64_t seq);

  Communicator& inner_;
  uint64_t inner_sent_ = 0;
};

}  // namespace dpt::comm
