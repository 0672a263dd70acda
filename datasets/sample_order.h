// [Sample order] The order in which training samples are visited depends only on (seed, epoch),
// never on the number of ranks: global sample g (counting from the start of training) is
// sample permutation_epoch[g mod n] of epoch g / n. A global batch of B samples at optimizer
// step k (0-based) is global samples [k*B, (k+1)*B); rank r of W takes the contiguous slice
// [r*B/W, (r+1)*B/W) of it, in micro-batches of b. So 2 ranks x b, 1 rank x 2b, and 1 rank
// accumulating 2 micro-batches of b all see the same samples at step k, and resuming at step k
// needs no replay.
#pragma once

#include <cstdint>
#include <vector>

namespace dpt::datasets {

class SampleOrder {
 public:
  SampleOrder(uint64_t seed, uint64_t num_samples);

  uint64_t num_samples() const { return num_samples_; }
  // The sample id (0..num_samples-1) visited at global position g.
  uint64_t at(uint64_t g);

 private:
  void build_epoch(uint64_t epoch);

  uint64_t seed_;
  uint64_t num_samples_;
  uint64_t epoch_ = UINT64_MAX;
  std::vector<uint64_t> perm_;
};

// Where one rank's micro-batch sits inside the global batch.
struct BatchGeometry {
  int64_t global_batch = 0;  // B: samples per optimizer step, all ranks together
  int world_size = 1;        // W
  int rank = 0;
  int micro_batch = 0;  // b: samples per forward pass on one rank
  int accum_steps() const {
    return static_cast<int>(global_batch / (int64_t{world_size} * micro_batch));
  }
  // Global position of sample j of micro-batch m at 0-based step `step`.
  uint64_t position(int64_t step, int m, int j) const {
    return static_cast<uint64_t>(step * global_batch + rank * (global_batch / world_size) +
                                 int64_t{m} * micro_batch + j);
  }
};

}  // namespace dpt::datasets
