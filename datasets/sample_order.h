// [Sample order] The order in which training samples are visited depends only on (seed, epoch)
// and the shards' sample counts, never on the number of ranks. Global position g (counting
// from the start of training) lies in epoch g / N (N samples in all); each epoch visits every
// sample once. A global batch of B samples at optimizer step k (0-based) is positions
// [k*B, (k+1)*B); rank r of W takes the contiguous slice [r*B/W, (r+1)*B/W) of it, in
// micro-batches of b. So 2 ranks x b, 1 rank x 2b, and 1 rank accumulating 2 micro-batches of b
// all see the same samples at step k, and resuming at step k needs no replay: any position maps
// to its sample in O(log shards) without state from earlier positions.
//
// Two shuffles:
// - full:  a pseudo-random permutation of all N samples per epoch. Reads hop across every shard.
// - local: the shards are permuted per epoch and cut into windows of `window_shards`
//          consecutive shards; the window's samples are visited in a permutation of their own
//          before the next window starts. Reads stay within a few shards at a time, so the
//          reader's chunk cache holds them (MosaicML streaming's shard-window shuffles are of
//          this kind).
#pragma once

#include <compare>
#include <cstdint>
#include <vector>

namespace dpt::datasets {

// A bijection of [0, n) chosen by key, evaluated in O(1) time and memory: a 6-round balanced
// Feistel network on the smallest even number of bits covering n, walking the cycle until the
// value falls inside [0, n) (fewer than 4 rounds of walking on average).
class RandomPermutation {
 public:
  RandomPermutation(uint64_t n, uint64_t key);
  uint64_t size() const { return n_; }
  uint64_t operator()(uint64_t i) const;

 private:
  uint64_t encrypt(uint64_t x) const;
  uint64_t n_;
  int half_bits_;
  uint64_t half_mask_;
  uint64_t keys_[6];
};

enum class ShuffleMode { full, local };

struct ShuffleConfig {
  ShuffleMode mode = ShuffleMode::full;
  int window_shards = 8;  // shards per window of the local shuffle
};

const char* shuffle_name(ShuffleMode m);  // "full" or "local"

struct SampleRef {
  uint32_t shard = 0;
  uint64_t index = 0;  // sample within the shard: tokens [index*T, index*T + T]
  auto operator<=>(const SampleRef&) const = default;
};

class SampleOrder {
 public:
  // samples_per_shard[s]: training samples in shard s (each > 0).
  SampleOrder(uint64_t seed, std::vector<uint64_t> samples_per_shard, ShuffleConfig shuffle);

  uint64_t num_samples() const { return num_samples_; }
  const ShuffleConfig& shuffle() const { return shuffle_; }
  // The sample visited at global position g.
  SampleRef at(uint64_t g);

 private:
  void build_epoch(uint64_t epoch);  // local shuffle: this epoch's shard order and windows
  SampleRef locate(const std::vector<uint64_t>& starts, const std::vector<uint32_t>& shard_of,
                   uint64_t i) const;

  uint64_t seed_;
  std::vector<uint64_t> counts_;
  std::vector<uint64_t> starts_;    // prefix sums of counts_ in shard order
  std::vector<uint32_t> identity_;  // 0..S-1
  uint64_t num_samples_ = 0;
  ShuffleConfig shuffle_;
  // Local shuffle, for epoch_: shards in visiting order, prefix sums of their counts in that
  // order, and the first position of each window.
  uint64_t epoch_ = UINT64_MAX;
  std::vector<uint32_t> epoch_shards_;
  std::vector<uint64_t> epoch_starts_;
  std::vector<uint64_t> window_starts_;
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
