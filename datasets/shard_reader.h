// Reads token ranges out of validated shards with HDF5 hyperslab reads, keeping a small LRU of
// open files, each with a chunk cache sized for the shuffle's access pattern, and checking
// every id against the model's vocabulary as it is read. [HDF5 thread]: use on the I/O thread.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "datasets/sample_order.h"
#include "datasets/shard_format.h"

namespace dpt::datasets {

struct ReaderOptions {
  int64_t vocab_size = 0;           // ids >= vocab_size are refused before they reach a lookup
  size_t max_open_files = 64;       // LRU of open shards; files are opened on first read
  size_t cache_bytes_per_file = 0;  // HDF5 chunk cache of each open shard's /tokens
  size_t max_read_tokens = 0;       // longest read (seq_len + 1)
  bool bypass_cache_if_unfiltered = false;  // no cache for uncompressed /tokens: HDF5 then
                                            // reads just the requested tokens
  bool direct_reads = true;            // pread unfiltered /tokens at its chunks' file addresses
  bool read_ahead_whole_file = false;  // ask the kernel to read an opened shard in full, in
                                       // the background (local shuffle: all of it is needed)
};

class ShardReader {
 public:
  ShardReader(const std::vector<ShardFacts>& shards, ReaderOptions options);
  ~ShardReader();
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  // Tokens [start, start + count) of shard `shard` into out as int32. Throws UsageError naming
  // the file and position when an id is >= vocab_size or the read fails (a shard that changed
  // or was damaged after it was indexed).
  void read(uint32_t shard, uint64_t start, uint64_t count, int32_t* out);
  size_t open_files() const;
  size_t direct_files() const;  // open shards read with pread ([Direct reads])

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Chunk-cache plan for a shuffle: the local shuffle keeps a window of shards open, each with a
// cache as large as its tokens (within budget_bytes for the window), so every chunk is read
// from disk once per epoch; the full shuffle touches one or two chunks per sample with no
// reuse, so it keeps many files open with a cache of two chunks for compressed data and none
// for uncompressed data (HDF5 reads chunks that do not fit the cache straight into the
// caller's buffer, so a sample costs its own bytes, not its chunk's).
ReaderOptions plan_reader(const std::vector<ShardFacts>& shards, const ShuffleConfig& shuffle,
                          size_t budget_bytes, int64_t vocab_size, int seq_len);

}  // namespace dpt::datasets
