// Token windows for training: sample i is tokens [i*T, i*T + T] of the stream (T + 1 tokens;
// inputs are the first T, targets the last T). Which samples a rank reads comes from
// SampleOrder and BatchGeometry ([Sample order]).
#pragma once

#include <cstdint>

#include "datasets/byte_file.h"
#include "datasets/sample_order.h"

namespace dpt::datasets {

// Samples of seq_len + 1 tokens in data: (size - 1) / seq_len. Throws UsageError naming
// --seq-len and --data when data holds fewer than seq_len + 1 tokens.
uint64_t count_windows(const ByteFile& data, int seq_len);

class WindowLoader {
 public:
  // Throws UsageError when the data holds fewer than seq_len + 1 tokens.
  WindowLoader(const ByteFile& data, int seq_len, BatchGeometry geometry, uint64_t seed);

  uint64_t num_samples() const { return order_.num_samples(); }
  const BatchGeometry& geometry() const { return geometry_; }

  // Fills inputs and targets [micro_batch, seq_len] for micro-batch m of 0-based step `step`.
  void load(int64_t step, int m, int32_t* inputs, int32_t* targets);

 private:
  const ByteFile& data_;
  int seq_len_;
  BatchGeometry geometry_;
  SampleOrder order_;
};

}  // namespace dpt::datasets
