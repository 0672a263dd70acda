// Writing one sample shard ([Sample format]) from arrays in memory: what prepare-data's sample
// recipes produce. The file is written beside its final name, fsynced and renamed into place,
// so a reader never sees half of it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "datasets/sample_format.h"

namespace dpt::datasets {

struct SampleArrays {
  SampleKind kind = SampleKind::image;
  std::vector<uint64_t> sample_shape;  // one sample: [H, W, C], [T, F] or [T]
  std::vector<uint8_t> images;         // kind image: N x H x W x C
  std::vector<float> series;           // kind series: N x T x F
  std::vector<int32_t> tokens;         // kind text: N x T
  std::vector<int32_t> lengths;        // text: optional, N
  int64_t vocab_size = 0;              // text: written as the vocab_size attribute when > 0
  std::vector<int32_t> labels;         // classification: N (else empty)
  int64_t num_classes = 0;             // written as num_classes when > 0
  std::vector<std::string> class_names;
  std::vector<float> targets;  // regression: N x num_targets
  uint64_t num_targets = 0;
  // Further numeric root attributes (a baseline's error, a normalization), written as given.
  std::vector<std::pair<std::string, double>> attributes;

  uint64_t num_samples() const;
};

// Writes a as a sample shard at path (chunks of whole samples, about 256 KiB each). Throws
// RuntimeFailure when a write fails.
void write_sample_shard(const std::string& path, const SampleArrays& a);

}  // namespace dpt::datasets
