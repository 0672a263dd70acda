// [Dataset] What the training loop needs from any dataset, token shards and sample shards
// alike: its samples counted shard by shard (for [Sample order]), the fields each sample fills
// ([Batch]), and reads of one sample into a row of a BatchBuffer on the I/O thread.
#pragma once

#include <cstdint>
#include <vector>

#include "datasets/batch.h"
#include "datasets/sample_order.h"
#include "storage/io_thread.h"

namespace dpt::datasets {

class Dataset {
 public:
  virtual ~Dataset() = default;

  virtual storage::IoThread& io() = 0;
  virtual const std::vector<uint64_t>& samples_per_shard() const = 0;
  virtual uint64_t num_samples() const = 0;
  virtual SampleFields fields() const = 0;
  // Sample i counting through the shards in order (no shuffle).
  virtual SampleRef sample_in_order(uint64_t i) const = 0;
  // Sample ref into row `row` of out. On the I/O thread only.
  virtual void read_sample(SampleRef ref, BatchBuffer& out, size_t row) = 0;
  // Values read per sample, for the reader's rate (tokens of a window: seq_len + 1).
  virtual uint64_t units_per_sample() const = 0;

  // Reads refs into rows [0, refs.size()) of out, waiting for the I/O thread: for setup and
  // the validation set, not for the step loop.
  void read_samples(const std::vector<SampleRef>& refs, BatchBuffer& out) {
    io().call([&] {
      for (size_t i = 0; i < refs.size(); ++i)
        read_sample(refs[i], out, i);
    });
  }
};

}  // namespace dpt::datasets
