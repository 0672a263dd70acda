// [Shard index] Scanning every token of a large dataset at each start is too slow at scale, so
// what inspect_shard() learned is cached in a small text file, by default beside the shards
// (DIR/.dptrain-index), keyed by the shard's canonical path, size and modification time: a
// shard whose size or mtime changed is inspected again. The file is written atomically
// (FILE.tmp.<host>.<pid>, fsync, rename, fsync of the directory), so concurrent jobs and
// crashes leave either the old or the new index; when two jobs save at once the last one wins
// and the other's new entries are just inspected again next time. A missing, foreign or damaged
// index is treated as empty, never as an error. The line format is described in
// shard_index.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "datasets/shard_format.h"

namespace dpt::datasets {

struct FileStamp {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

// stat(2) of a shard; throws UsageError naming the path when it does not exist or is not a
// regular file.
FileStamp stat_shard(const std::string& path);

// [Shards in training] A shard must stay as it was indexed while a run reads it: the readers
// stat(2) it before they read it (at most once a second per shard, so that a parallel file
// system's metadata server sees a bounded rate, not one call per sample) and end the run
// (UsageError naming it) when it was deleted or its size or modification time changed.
// Without this a truncated shard could read as zeros (HDF5's POSIX driver fills a read past
// the end of the file with zeros) and a deleted one would train on from a handle still open.
void check_unchanged(const std::string& path, FileStamp indexed);

// check_unchanged() per shard of one reader, at most once per kRecheck.
class ShardWatch {
 public:
  static constexpr std::chrono::seconds kRecheck{1};
  explicit ShardWatch(size_t shards) : next_(shards) {}
  void check(size_t shard, const std::string& path, FileStamp indexed) {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_.at(shard)) return;
    check_unchanged(path, indexed);
    next_[shard] = now + kRecheck;
  }

 private:
  std::vector<std::chrono::steady_clock::time_point> next_;  // epoch: not checked yet
};

// Where the index of these shards lives: beside the first shard (DIR/.dptrain-index) when
// cache_dir is empty, else cache_dir/<16 hex digits of fnv1a64(DIR)>.dptrain-index, so the
// datasets sharing a cache directory do not collide. DIR is the canonical directory of the
// first shard. Precondition: shards is not empty.
std::string index_path_for(const std::vector<std::string>& shards, const std::string& cache_dir);

class ShardIndex {
 public:
  // Reads the index at file; returns an empty index when it is missing or unusable.
  static ShardIndex load(const std::string& file);

  // The cached facts of path (looked up by its canonical path) when its size and mtime still
  // match stamp.
  std::optional<ShardFacts> find(const std::string& path, FileStamp stamp) const;
  void put(const ShardFacts& facts);  // keyed and stored by the canonical facts.path
  size_t size() const { return entries_.size(); }

  // Writes the index atomically. Returns false and sets *why when it cannot (read-only
  // directory, disk full): the caller warns and trains on without a cache.
  bool save(const std::string& file, std::string* why) const;

 private:
  std::unordered_map<std::string, ShardFacts> entries_;  // by canonical path (realpath)
};

}  // namespace dpt::datasets
