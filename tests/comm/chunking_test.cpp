// The [MPI count limit] splitting in comm/chunking.h, on counts far beyond any real buffer.
#include "comm/chunking.h"

#include <climits>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "common/errors.h"

namespace {

using dpt::comm::detail::Chunk;
using dpt::comm::detail::chunk_at;
using dpt::comm::detail::chunk_count;
using dpt::comm::detail::kMaxChunkElements;

std::vector<Chunk> split(size_t count, size_t max_chunk) {
  std::vector<Chunk> chunks;
  const size_t n = chunk_count(count, max_chunk);
  for (size_t i = 0; i < n; ++i) {
    chunks.push_back(chunk_at(count, i, max_chunk));
  }
  return chunks;
}

// Chunks in order, back to back from 0 to count, each non-empty and within max_chunk.
void expect_tiling(const std::vector<Chunk>& chunks, size_t count, size_t max_chunk) {
  size_t next = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].offset, next) << "chunk " << i;
    EXPECT_GE(chunks[i].count, 1) << "chunk " << i;
    EXPECT_LE(static_cast<size_t>(chunks[i].count), max_chunk) << "chunk " << i;
    next = chunks[i].offset + static_cast<size_t>(chunks[i].count);
  }
  EXPECT_EQ(next, count);
}

TEST(Chunking, MaxChunkFitsMpiIntCount) {
  static_assert(kMaxChunkElements <= static_cast<size_t>(INT_MAX));
  EXPECT_EQ(kMaxChunkElements, size_t{1} << 30);
}

TEST(Chunking, ZeroElementsMakeNoChunks) {
  EXPECT_EQ(chunk_count(0), 0u);
  EXPECT_TRUE(split(0, kMaxChunkElements).empty());
}

TEST(Chunking, CountUpToLimitIsOneChunk) {
  for (size_t count : {size_t{1}, size_t{1001}, kMaxChunkElements}) {
    const std::vector<Chunk> chunks = split(count, kMaxChunkElements);
    ASSERT_EQ(chunks.size(), 1u) << count;
    EXPECT_EQ(chunks[0].offset, 0u);
    EXPECT_EQ(static_cast<size_t>(chunks[0].count), count);
  }
}

TEST(Chunking, CountAboveIntMaxSplitsIntoFullChunksAndRemainder) {
  // 12 GiB of f32 that is never allocated: three full chunks and a remainder of 5.
  const size_t count = 3 * kMaxChunkElements + 5;
  const std::vector<Chunk> chunks = split(count, kMaxChunkElements);
  ASSERT_EQ(chunks.size(), 4u);
  expect_tiling(chunks, count, kMaxChunkElements);
  EXPECT_EQ(chunks[3].offset, 3 * kMaxChunkElements);
  EXPECT_EQ(chunks[3].count, 5);
}

TEST(Chunking, ExactMultipleOfChunkHasNoEmptyTail) {
  const size_t count = 4 * kMaxChunkElements;
  const std::vector<Chunk> chunks = split(count, kMaxChunkElements);
  ASSERT_EQ(chunks.size(), 4u);
  expect_tiling(chunks, count, kMaxChunkElements);
  EXPECT_EQ(static_cast<size_t>(chunks.back().count), kMaxChunkElements);
}

TEST(Chunking, CountNearSizeMaxDoesNotWrap) {
  const size_t count = SIZE_MAX;
  const size_t n = chunk_count(count);
  EXPECT_EQ(n, SIZE_MAX / kMaxChunkElements + 1);
  const Chunk last = chunk_at(count, n - 1);
  EXPECT_EQ(last.offset + static_cast<size_t>(last.count), count);
  EXPECT_EQ(static_cast<size_t>(last.count), SIZE_MAX % kMaxChunkElements);
}

TEST(Chunking, SmallChunksTileOddCounts) {
  for (size_t max_chunk : {size_t{1}, size_t{7}, size_t{64}}) {
    for (size_t count : {size_t{1}, size_t{7}, size_t{13}, size_t{1001}}) {
      expect_tiling(split(count, max_chunk), count, max_chunk);
    }
  }
}

TEST(Chunking, ChunkSizeOutsideIntRangeThrowsRuntimeFailure) {
  EXPECT_THROW(chunk_count(10, 0), dpt::RuntimeFailure);
  EXPECT_THROW(chunk_count(10, static_cast<size_t>(INT_MAX) + 1), dpt::RuntimeFailure);
  EXPECT_THROW(chunk_at(10, 10, 1), dpt::RuntimeFailure);
}

}  // namespace
