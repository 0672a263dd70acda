// [Prefetch] One rank's micro-batches, read ahead by the I/O thread into a fixed ring of
// buffers so that the step loop finds its batch ready and allocates nothing. The stream
// starts at any step (resuming needs no replay) and measures how long the consumer waited.
#pragma once

#include <cstdint>
#include <exception>
#include <vector>

#include "datasets/sample_order.h"
#include "datasets/token_dataset.h"

namespace dpt::datasets {

class BatchStream final : public storage::IoProducer {
 public:
  // Micro-batches of geometry.rank from 0-based step first_step on, up to `depth` of them
  // read ahead.
  BatchStream(TokenDataset& data, SampleOrder order, BatchGeometry geometry, int64_t first_step,
              int depth);
  ~BatchStream() override;  // unregisters from the I/O thread before the buffers go
  BatchStream(const BatchStream&) = delete;
  BatchStream& operator=(const BatchStream&) = delete;

  struct MicroBatch {
    const int32_t* inputs;   // [micro_batch, seq_len]
    const int32_t* targets;  // [micro_batch, seq_len]: inputs shifted by one token
    int64_t step;            // 0-based optimizer step
    int micro;               // micro-batch within the step
    double wait_ms;          // how long next() waited for it (the data stall)
  };
  // The next micro-batch (step-major). Its buffers stay valid until the next call. Rethrows
  // what the read of this micro-batch threw.
  MicroBatch next();

  struct Stats {
    uint64_t tokens_read = 0;  // tokens read by the I/O thread so far
    double read_seconds = 0;   // I/O thread time spent reading them
    double wait_seconds = 0;   // consumer time spent waiting in next()
  };
  Stats stats();

 private:
  bool claim_locked() override;
  void run_claimed() override;
  void publish_locked() override;

  struct Slot {
    std::vector<int32_t> inputs, targets;
    int64_t item = -1;  // micro-batch number held (ready) or being filled
    bool ready = false;
    std::exception_ptr error;
  };

  TokenDataset& data_;
  SampleOrder order_;  // used on the I/O thread only (it caches the epoch's shard order)
  BatchGeometry geo_;
  int accum_;
  int64_t first_step_;
  std::vector<Slot> slots_;
  std::vector<int32_t> window_;  // one sample of seq_len + 1 tokens
  // Under the I/O mutex:
  int64_t next_fill_ = 0;  // next micro-batch the I/O thread claims
  int64_t next_take_ = 0;  // next micro-batch next() returns
  int64_t claimed_ = -1;
  bool failed_ = false;  // a read failed: read no further
  Stats stats_;
  double claimed_seconds_ = 0;
};

}  // namespace dpt::datasets
