// ShardWriter: writes one token shard ([Shard format], shard_format.h) in bounded memory and
// puts it in place atomically, so a reader never sees a half-written shard.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "datasets/shard_format.h"

namespace dpt::datasets {

struct ShardWriterOptions {
  TokenType dtype = TokenType::u16;
  uint64_t chunk_tokens = 65536;  // length of one HDF5 chunk of /tokens (and of the buffer)
  int gzip_level = 0;             // 0: no compression; 1..9: deflate level
  int64_t vocab_size = 0;         // > every id appended; stored as the vocab_size attribute
  bool write_doc_offsets = true;  // write /doc_offsets from the begin_document() calls
};

// Writes to a temporary file beside `path` (".NAME.tmp.PID"); finish() renames it into place.
// Memory stays at one chunk of tokens and one chunk of document offsets, whatever the shard
// size. All HDF5 calls go through the calling thread ([HDF5 thread], h5.h): use one writer
// thread per process. Failures throw UsageError (bad ids or options, a path that cannot be
// written) or RuntimeFailure (HDF5 or I/O failures), both naming the shard's path.
class ShardWriter {
 public:
  // Creates the temporary file. Throws UsageError for bad options or an unwritable directory.
  ShardWriter(std::string path, const ShardWriterOptions& options);
  // An unfinished writer removes its temporary file; never throws.
  ~ShardWriter();
  ShardWriter(ShardWriter&&) noexcept;
  ShardWriter& operator=(ShardWriter&&) noexcept;
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // The next appended token starts a document. The offset is recorded when that token arrives,
  // so repeated calls without tokens in between, or a call just before finish(), add nothing
  // (doc offsets stay strictly increasing and < size()). Tokens appended before the first call
  // belong to a document at offset 0: a document continued from the previous shard.
  void begin_document();

  // Appends n ids. Throws UsageError (nothing of the call appended) when an id is >= vocab_size
  // or does not fit the dtype.
  void append(const uint32_t* ids, size_t n);

  uint64_t size() const;           // tokens appended so far
  uint64_t num_documents() const;  // doc offsets recorded so far
  const std::string& path() const;

  // Writes what is buffered, /doc_offsets and the attributes, closes and fsyncs the file and
  // renames it to path(). The writer accepts nothing after this.
  void finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dpt::datasets
