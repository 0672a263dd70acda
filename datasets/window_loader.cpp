// Cutting sample windows out of a byte stream.
#include "datasets/window_loader.h"

#include <string>

#include "common/errors.h"

namespace dpt::datasets {

uint64_t count_windows(const ByteFile& data, int seq_len) {
  if (data.size() < static_cast<size_t>(seq_len) + 1) {
    throw UsageError("--seq-len " + std::to_string(seq_len) + " needs at least " +
                     std::to_string(seq_len + 1) + " tokens per sample, but --data " + data.name() +
                     " holds " + std::to_string(data.size()) +
                     ". Use a shorter --seq-len or a larger data file.");
  }
  return (data.size() - 1) / static_cast<size_t>(seq_len);
}

WindowLoader::WindowLoader(const ByteFile& data, int seq_len, BatchGeometry geometry, uint64_t seed)
    : data_(data),
      seq_len_(seq_len),
      geometry_(geometry),
      order_(seed, count_windows(data, seq_len)) {}

void WindowLoader::load(int64_t step, int m, int32_t* inputs, int32_t* targets) {
  const size_t T = static_cast<size_t>(seq_len_);
  for (int j = 0; j < geometry_.micro_batch; ++j) {
    const uint64_t sample = order_.at(geometry_.position(step, m, j));
    const uint8_t* w = data_.data() + sample * T;
    DPT_CHECK(sample * T + T < data_.size(), "sample window past the end of the data");
    for (size_t t = 0; t < T; ++t) {
      inputs[j * T + t] = w[t];
      targets[j * T + t] = w[t + 1];
    }
  }
}

}  // namespace dpt::datasets
