// Splitting a size_t element count into pieces that fit MPI's int counts. Kept free of MPI so
// tests can split counts far larger than any buffer they could allocate.
#pragma once

#include <climits>
#include <cstddef>
#include <string>

#include "common/errors.h"

namespace dpt::comm::detail {

// [MPI count limit]
// MPI takes element counts as int, so a buffer of more than INT_MAX elements (8 GiB of f32)
// goes out in several calls. A power of two rather than INT_MAX itself starts every chunk at a
// well-aligned address (INT_MAX elements would start the second chunk at an odd element).
inline constexpr size_t kMaxChunkElements = size_t{1} << 30;

struct Chunk {
  size_t offset;  // in elements from the start of the buffer
  int count;      // elements in this chunk, 1 .. max_chunk
};

// How many chunks of at most `max_chunk` elements cover `count` elements (0 for count 0).
inline size_t chunk_count(size_t count, size_t max_chunk = kMaxChunkElements) {
  DPT_CHECK(max_chunk >= 1 && max_chunk <= static_cast<size_t>(INT_MAX),
            "chunk size " + std::to_string(max_chunk) + " is outside [1, INT_MAX]");
  // Written without count + max_chunk - 1, which wraps for counts near SIZE_MAX.
  return count / max_chunk + (count % max_chunk != 0 ? 1 : 0);
}

// The index-th chunk: every chunk but the last is full; the last holds the remainder. Callers
// go through the chunks in index order, the same on every rank ([Collective contract]).
inline Chunk chunk_at(size_t count, size_t index, size_t max_chunk = kMaxChunkElements) {
  DPT_CHECK(index < chunk_count(count, max_chunk), "chunk " + std::to_string(index) +
                                                       " is past the end of " +
                                                       std::to_string(count) + " elements");
  const size_t offset = index * max_chunk;
  const size_t left = count - offset;
  return Chunk{offset, static_cast<int>(left < max_chunk ? left : max_chunk)};
}

}  // namespace dpt::comm::detail
