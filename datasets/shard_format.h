// [Shard format] One shard is an HDF5 file holding (docs/data-format.md has the full text):
//   /tokens        1-D, uint8 | uint16 | int32 | uint32, chunked (optionally gzip); the token ids
//                  of consecutive documents, usually separated by an end-of-text id
//   /doc_offsets   optional, 1-D int64: where each document starts in /tokens; first 0,
//                  strictly increasing, every entry < len(tokens)
//   attributes on /: vocab_size (integer > every id) and format_version (integer, = 1)
// A dataset is a directory of shards (every *.h5 in it, in name order), a glob, or one file.
// A training sample is a window of seq_len + 1 tokens that starts at a multiple of seq_len
// inside one shard; windows never span two shards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dpt::datasets {

inline constexpr int kShardFormatVersion = 1;
inline constexpr const char* kTokensName = "tokens";
inline constexpr const char* kDocOffsetsName = "doc_offsets";
inline constexpr const char* kVocabSizeAttr = "vocab_size";
inline constexpr const char* kFormatVersionAttr = "format_version";

enum class TokenType : uint8_t { u8 = 0, u16 = 1, i32 = 2, u32 = 3 };
const char* token_type_name(TokenType t);  // "uint8", "uint16", "int32", "uint32"
size_t token_type_size(TokenType t);

// What validation learned about one shard; cached in the shard index (shard_index.h), keyed by
// (path, file_size, mtime_ns).
// What a shard holds, without its path: a plain value that ranks exchange as it is ([Typed
// collectives]) and the shard index stores.
struct ShardStats {
  uint64_t file_size = 0;
  int64_t mtime_ns = 0;
  TokenType dtype = TokenType::u16;
  uint64_t num_tokens = 0;
  uint64_t min_id = 0;  // smallest and largest token id in /tokens
  uint64_t max_id = 0;
  int64_t vocab_size = 0;     // the vocab_size attribute
  uint64_t num_docs = 0;      // entries of /doc_offsets, 0 when absent
  uint64_t chunk_tokens = 0;  // chunk length of /tokens
  uint64_t checksum = 0;      // FNV-1a 64 over /tokens as stored (little-endian bytes)

  // Training samples of seq_len + 1 tokens in this shard: (num_tokens - 1) / seq_len.
  uint64_t num_samples(int seq_len) const {
    return num_tokens > 0 ? (num_tokens - 1) / static_cast<uint64_t>(seq_len) : 0;
  }
};

struct ShardFacts : ShardStats {
  std::string path;
};

}  // namespace dpt::datasets
