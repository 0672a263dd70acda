// Sample bookkeeping of a dataset and its reader's life on the I/O thread.
#include "datasets/token_dataset.h"

#include <algorithm>

#include "common/errors.h"

namespace dpt::datasets {

using storage::IoThread;

TokenDataset::TokenDataset(IoThread& io, std::vector<ShardFacts> shards, int seq_len,
                           ReaderOptions reader)
    : io_(io), shards_(std::move(shards)), seq_len_(seq_len) {
  DPT_CHECK(!shards_.empty() && seq_len > 0, "a dataset needs shards and a positive seq_len");
  starts_.push_back(0);
  for (const auto& f : shards_) {
    samples_per_shard_.push_back(f.num_samples(seq_len));
    DPT_CHECK(samples_per_shard_.back() > 0, f.path + " holds no sample");
    starts_.push_back(starts_.back() + samples_per_shard_.back());
    num_tokens_ += f.num_tokens;
  }
  num_samples_ = starts_.back();
  reader.max_read_tokens = std::max<size_t>(reader.max_read_tokens, size_t(seq_len) + 1);
  io_.call([&] { reader_ = std::make_unique<ShardReader>(shards_, reader); });
}

TokenDataset::~TokenDataset() {
  try {
    io_.call([&] { reader_.reset(); });
  } catch (...) {  // destructors never throw; the files close with the process
  }
}

SampleRef TokenDataset::sample_in_order(uint64_t i) const {
  DPT_CHECK(i < num_samples_, "sample index out of range");
  const auto it = std::upper_bound(starts_.begin(), starts_.end() - 1, i) - 1;
  return SampleRef{static_cast<uint32_t>(it - starts_.begin()), i - *it};
}

void TokenDataset::read_sample(SampleRef ref, int32_t* out) {
  const uint64_t T = static_cast<uint64_t>(seq_len_);
  reader_->read(ref.shard, ref.index * T, T + 1, out);
}

void TokenDataset::read_sample(SampleRef ref, BatchBuffer& out, size_t row) {
  window_.resize(static_cast<size_t>(seq_len_) + 1);
  read_sample(ref, window_.data());
  split_window(window_.data(), static_cast<size_t>(seq_len_), out.tokens(row), out.labels(row));
}

void TokenDataset::read_samples(const std::vector<SampleRef>& refs, int32_t* out) {
  io_.call([&] {
    for (size_t i = 0; i < refs.size(); ++i)
      read_sample(refs[i], out + i * (static_cast<size_t>(seq_len_) + 1));
  });
}

}  // namespace dpt::datasets
