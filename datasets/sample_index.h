// [Shard index] for sample shards: what inspect_sample_shard() learned, cached beside the shards
// (DIR/.dptrain-index.samples, or in --index-cache) and keyed by canonical path, size and
// modification time, with the token index's guarantees: written atomically, a missing, foreign
// or damaged file read as empty, a changed shard inspected again.
#pragma once

#include <optional>
#include <string>
#include <unordered_map>

#include "datasets/sample_format.h"
#include "datasets/shard_index.h"

namespace dpt::datasets {

// The sample index's file for these shards: index_path_for(shards, cache_dir) + ".samples".
std::string sample_index_path_for(const std::vector<std::string>& shards,
                                  const std::string& cache_dir);

class SampleIndex {
 public:
  static SampleIndex load(const std::string& file);
  // The cached facts of path (its path field set to path) when size and mtime match stamp.
  std::optional<SampleShardFacts> find(const std::string& path, FileStamp stamp) const;
  void put(const SampleShardFacts& facts);
  size_t size() const { return entries_.size(); }
  // Atomically; false with *why when it cannot (the caller warns and trains on).
  bool save(const std::string& file, std::string* why) const;

 private:
  std::unordered_map<std::string, SampleShardFacts> entries_;  // by canonical path
};

}  // namespace dpt::datasets
