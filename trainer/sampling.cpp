// Temperature, top-k and top-p sampling over one row of logits.
#include "trainer/sampling.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/errors.h"
#include "common/rng.h"

namespace dpt::trainer {

namespace {
constexpr uint64_t kSampleStream = 0x67656e65ull;  // "gene": common/rng.h stream of generation
}

void SamplingConfig::validate() const {
  if (!(temperature >= 0) || !std::isfinite(temperature))
    throw UsageError("--temperature must be >= 0 (0: greedy), got " + std::to_string(temperature));
  if (top_k < 0) throw UsageError("--top-k must be >= 0 (0: no limit)");
  if (!(top_p > 0 && top_p <= 1))
    throw UsageError("--top-p must be in (0, 1] (1: no limit), got " + std::to_string(top_p));
}

Sampler::Sampler(SamplingConfig cfg) : cfg_(cfg) {
  cfg_.validate();
}

int32_t Sampler::next(std::span<const float> logits, uint64_t index) {
  const int32_t V = static_cast<int32_t>(logits.size());
  DPT_CHECK(V > 0, "no logits to sample from");
  if (cfg_.temperature == 0)
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  ranked_.resize(static_cast<size_t>(V));
  for (int32_t v = 0; v < V; ++v)
    ranked_[v] = {static_cast<double>(logits[v]) / cfg_.temperature, v};
  // Most likely first; ties by token id, so the order never depends on the sort.
  const auto more_likely = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t keep = cfg_.top_k > 0 ? std::min<size_t>(cfg_.top_k, ranked_.size()) : ranked_.size();
  std::partial_sort(ranked_.begin(), ranked_.begin() + static_cast<std::ptrdiff_t>(keep),
                    ranked_.end(), more_likely);
  const double max = ranked_[0].first;
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    ranked_[i].first = std::exp(ranked_[i].first - max);
    sum += ranked_[i].first;
  }
  if (cfg_.top_p < 1) {  // the smallest prefix reaching top_p of the (top-k) mass
    double mass = 0;
    size_t n = 0;
    while (n < keep && mass < cfg_.top_p * sum)
      mass += ranked_[n++].first;
    keep = std::max<size_t>(1, n);
    sum = mass;
  }
  const double u = random_unit(cfg_.seed, kSampleStream, index) * sum;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += ranked_[i].first;
    if (u < acc) return ranked_[i].second;
  }
  return ranked_[keep - 1].second;
}

}  // namespace dpt::trainer
