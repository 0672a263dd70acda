// Validation of one shard against [Shard format]: structure, types, attributes, doc_offsets, and
// a scan of every token for the smallest and largest id and a checksum.
#pragma once

#include <string>

#include "datasets/shard_format.h"

namespace dpt::datasets {

// Opens path, checks it and scans /tokens in hyperslabs of whole chunks (about 8 MiB each,
// hashed on a helper thread while the next one is read). Returns its facts: path canonical
// (realpath), file_size and mtime_ns from stat(2) before the scan, chunk_tokens 0 when /tokens
// is contiguous, checksum = FNV-1a 64 chained over the ids' little-endian bytes at their
// stored width (a big-endian /tokens hashes as if stored little-endian).
// Throws a one-line UsageError for every malformed input, naming the file, the dataset or
// attribute, and the fix: missing or unreadable file, not an HDF5 file, no /tokens, /tokens not
// 1-D or of a floating, signed 8/16/64-bit, uint64 or other unsupported type, a negative id in
// int32 tokens, empty /tokens, a missing or non-integer vocab_size, vocab_size < 1 or an
// id >= vocab_size, a missing or unsupported format_version, a bad /doc_offsets, a file
// truncated after its header or otherwise damaged (an open or read that fails). HDF5 prints
// nothing. Makes HDF5 calls: [HDF5 thread].
ShardFacts inspect_shard(const std::string& path);

}  // namespace dpt::datasets
