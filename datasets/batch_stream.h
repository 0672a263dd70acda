// [Prefetch] One rank's micro-batches, read ahead by the I/O thread into a fixed ring of
// buffers so that the step loop finds its batch ready and allocates nothing. The stream
// starts at any step (resuming needs no replay) and measures how long the consumer waited.
#pragma once

#include <cstdint>
#include <exception>
#include <vector>

#include "datasets/batch.h"
#include "datasets/dataset.h"
#include "datasets/sample_order.h"

namespace dpt::datasets {

class BatchStream final : public storage::IoProducer {
 public:
  // Micro-batches of geometry.rank from 0-based step first_step on, up to `depth` of them
  // read ahead.
  BatchStream(Dataset& data, SampleOrder order, BatchGeometry geometry, int64_t first_step,
              int depth);
  ~BatchStream() override;  // unregisters from the I/O thread before the buffers go
  BatchStream(const BatchStream&) = delete;
  BatchStream& operator=(const BatchStream&) = delete;

  struct MicroBatch {
    Batch batch;             // micro_batch rows of the dataset's fields
    const int32_t* inputs;   // = batch.tokens: [micro_batch, seq_len] of a token dataset
    const int32_t* targets;  // = batch.labels: the inputs shifted by one token
    int64_t step;            // 0-based optimizer step
    int micro;               // micro-batch within the step
    double wait_ms;          // how long next() waited for it (the data stall)
  };
  // The next micro-batch (step-major). Its buffers stay valid until the next call. Rethrows
  // what the read of this micro-batch threw.
  MicroBatch next();

  struct Stats {
    uint64_t samples_read = 0;  // samples read by the I/O thread so far
    uint64_t tokens_read = 0;   // their units (Dataset::units_per_sample: tokens of a window)
    double read_seconds = 0;    // I/O thread time spent reading them
    double wait_seconds = 0;    // consumer time spent waiting in next()
  };
  Stats stats();

 private:
  bool claim_locked() override;
  void run_claimed() override;
  void publish_locked() override;

  struct Slot {
    BatchBuffer rows;
    int64_t item = -1;  // micro-batch number held (ready) or being filled
    bool ready = false;
    std::exception_ptr error;
  };

  Dataset& data_;
  SampleOrder order_;  // used on the I/O thread only (it caches the epoch's shard order)
  BatchGeometry geo_;
  int accum_;
  int64_t first_step_;
  std::vector<Slot> slots_;
  // Under the I/O mutex:
  int64_t next_fill_ = 0;  // next micro-batch the I/O thread claims
  int64_t next_take_ = 0;  // next micro-batch next() returns
  int64_t claimed_ = -1;
  bool failed_ = false;  // a read failed: read no further
  Stats stats_;
  double claimed_seconds_ = 0;
};

}  // namespace dpt::datasets
