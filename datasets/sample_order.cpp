// Per-epoch permutations of the samples (full or shard-local) from counter-based randomness.
#include "datasets/sample_order.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "common/errors.h"
#include "common/rng.h"

namespace dpt::datasets {

namespace {
constexpr uint64_t kFullStream = 0x66756c6c5f6f7264ull;    // "full_ord"
constexpr uint64_t kShardStream = 0x73686172645f6f72ull;   // "shard_or"
constexpr uint64_t kWindowStream = 0x77696e646f775f6full;  // "window_o"
constexpr int kRounds = 6;
}  // namespace

RandomPermutation::RandomPermutation(uint64_t n, uint64_t key) : n_(n) {
  DPT_CHECK(n > 0, "a permutation needs at least one element");
  int bits = 2;
  while (bits < 64 && (uint64_t{1} << bits) < n)
    bits += 2;
  half_bits_ = bits / 2;
  half_mask_ = (uint64_t{1} << half_bits_) - 1;
  for (int r = 0; r < kRounds; ++r)
    keys_[r] = mix64(key + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(r + 1));
}

uint64_t RandomPermutation::encrypt(uint64_t x) const {
  uint64_t left = x >> half_bits_, right = x & half_mask_;
  for (int r = 0; r < kRounds; ++r) {
    const uint64_t f = mix64(right ^ keys_[r]) & half_mask_;
    left = std::exchange(right, left ^ f);
  }
  return (left << half_bits_) | right;
}

uint64_t RandomPermutation::operator()(uint64_t i) const {
  DPT_CHECK(i < n_, "permutation index out of range");
  // Cycle walking: the Feistel network permutes [0, 4^half_bits); following the cycle from i
  // until it re-enters [0, n) restricts it to a permutation of [0, n).
  uint64_t x = encrypt(i);
  while (x >= n_)
    x = encrypt(x);
  return x;
}

const char* shuffle_name(ShuffleMode m) {
  return m == ShuffleMode::full ? "full" : "local";
}

SampleOrder::SampleOrder(uint64_t seed, std::vector<uint64_t> samples_per_shard,
                         ShuffleConfig shuffle)
    : seed_(seed), counts_(std::move(samples_per_shard)), shuffle_(shuffle) {
  DPT_CHECK(!counts_.empty(), "a sample order needs at least one shard");
  DPT_CHECK(shuffle_.window_shards > 0, "the local shuffle needs windows of at least one shard");
  starts_.resize(counts_.size() + 1, 0);
  for (size_t s = 0; s < counts_.size(); ++s) {
    DPT_CHECK(counts_[s] > 0, "every shard must hold at least one sample");
    starts_[s + 1] = starts_[s] + counts_[s];
  }
  num_samples_ = starts_.back();
  identity_.resize(counts_.size());
  std::iota(identity_.begin(), identity_.end(), uint32_t{0});
}

SampleRef SampleOrder::locate(const std::vector<uint64_t>& starts,
                              const std::vector<uint32_t>& shard_of, uint64_t i) const {
  // The last start <= i; starts has one more entry than shard_of.
  const auto it = std::upper_bound(starts.begin(), starts.end() - 1, i);
  const size_t k = static_cast<size_t>(it - starts.begin()) - 1;
  return SampleRef{shard_of[k], i - starts[k]};
}

SampleRef SampleOrder::at(uint64_t g) {
  const uint64_t epoch = g / num_samples_;
  const uint64_t p = g % num_samples_;
  // Each epoch draws from its own key, so epoch e's order needs nothing from epoch e-1.
  const uint64_t epoch_key = random_u64(seed_, epoch, 0);
  if (shuffle_.mode == ShuffleMode::full) {
    const RandomPermutation perm(num_samples_, epoch_key ^ kFullStream);
    return locate(starts_, identity_, perm(p));
  }
  if (epoch != epoch_) build_epoch(epoch);
  const auto w = std::upper_bound(window_starts_.begin(), window_starts_.end() - 1, p) - 1;
  const uint64_t window = static_cast<uint64_t>(w - window_starts_.begin());
  const uint64_t begin = *w, size = *(w + 1) - *w;
  const RandomPermutation perm(size, random_u64(epoch_key, kWindowStream, window));
  return locate(epoch_starts_, epoch_shards_, begin + perm(p - begin));
}

void SampleOrder::build_epoch(uint64_t epoch) {
  const size_t S = counts_.size();
  epoch_shards_ = identity_;
  // Fisher-Yates over the shards: S is small (thousands), so an explicit order is cheap.
  const uint64_t key = random_u64(seed_, epoch, 0);
  uint64_t counter = 0;
  for (size_t i = S - 1; i > 0; --i) {
    const uint64_t j = random_below(key, kShardStream, &counter, i + 1);
    std::swap(epoch_shards_[i], epoch_shards_[j]);
  }
  epoch_starts_.assign(S + 1, 0);
  for (size_t i = 0; i < S; ++i)
    epoch_starts_[i + 1] = epoch_starts_[i] + counts_[epoch_shards_[i]];
  window_starts_.clear();
  const size_t w = static_cast<size_t>(shuffle_.window_shards);
  for (size_t i = 0; i < S; i += w)
    window_starts_.push_back(epoch_starts_[i]);
  window_starts_.push_back(num_samples_);
  epoch_ = epoch;
}

}  // namespace dpt::datasets
