// Per-epoch permutations from counter-based random numbers (Fisher-Yates, unbiased draws).
#include "datasets/sample_order.h"

#include <numeric>
#include <utility>

#include "common/errors.h"
#include "common/rng.h"

namespace dpt::datasets {

namespace {
constexpr uint64_t kOrderStream = 0x5a4d504c454f5244ull;  // "SAMPLEORD"-ish stream tag
}

SampleOrder::SampleOrder(uint64_t seed, uint64_t num_samples)
    : seed_(seed), num_samples_(num_samples) {
  DPT_CHECK(num_samples > 0, "a sample order needs at least one sample");
}

uint64_t SampleOrder::at(uint64_t g) {
  const uint64_t epoch = g / num_samples_;
  if (epoch != epoch_) build_epoch(epoch);
  return perm_[g % num_samples_];
}

void SampleOrder::build_epoch(uint64_t epoch) {
  perm_.resize(num_samples_);
  std::iota(perm_.begin(), perm_.end(), uint64_t{0});
  // Each epoch draws from its own stream, so epoch e's order needs nothing from epoch e-1.
  const uint64_t stream = kOrderStream ^ mix64(epoch);
  uint64_t counter = 0;
  for (uint64_t i = num_samples_ - 1; i > 0; --i) {
    const uint64_t j = random_below(seed_, stream, &counter, i + 1);
    std::swap(perm_[i], perm_[j]);
  }
  epoch_ = epoch;
}

}  // namespace dpt::datasets
