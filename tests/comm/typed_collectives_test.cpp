// [Typed collectives] on the MPI backend, nccl-tests "verifiable" style: every rank's value is a
// function of its rank, so each rank computes the expected result alone.
#include "comm/typed_collectives.h"

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "comm/mpi_communicator.h"
#include "common/errors.h"

namespace dpt::comm {
namespace {

// A struct with padding between its members: bytes travel, members read back.
struct Record {
  uint64_t id;
  uint32_t small;
  double value;
  int8_t flag;
};

Record record_of(int rank) {
  return {0x1000000000ull * static_cast<uint64_t>(rank + 1) + 7, 3u * static_cast<uint32_t>(rank),
          0.125 * rank - 2.5, static_cast<int8_t>(-rank)};
}

// A string of `rank`: empty on rank 1, otherwise of odd length with non-ASCII and NUL bytes.
std::string string_of(int rank) {
  if (rank == 1) return "";
  std::string s = "r" + std::to_string(rank) + "-\xc3\xa9\"\\";
  s.push_back('\0');
  s += std::string(static_cast<size_t>(2 * rank + 1), static_cast<char>('a' + rank % 26));
  return s;
}

TEST(TypedCollectives, AllGatherValueKeepsEveryMemberOfAPaddedStruct) {
  MpiCommunicator world(MPI_COMM_WORLD);
  const auto all = all_gather_value(world, record_of(world.rank()));
  ASSERT_EQ(all.size(), static_cast<size_t>(world.world_size()));
  for (int r = 0; r < world.world_size(); ++r) {
    const Record want = record_of(r);
    EXPECT_EQ(all[r].id, want.id);
    EXPECT_EQ(all[r].small, want.small);
    EXPECT_EQ(all[r].value, want.value);
    EXPECT_EQ(all[r].flag, want.flag);
  }
}

TEST(TypedCollectives, AllGatherVectorConcatenatesInRankOrder) {
  MpiCommunicator world(MPI_COMM_WORLD);
  std::vector<Record> mine;
  for (int k = 0; k < 3; ++k)
    mine.push_back(record_of(world.rank() * 10 + k));
  const auto all = all_gather_vector(world, mine);
  ASSERT_EQ(all.size(), 3u * static_cast<size_t>(world.world_size()));
  for (int r = 0; r < world.world_size(); ++r)
    for (int k = 0; k < 3; ++k)
      EXPECT_EQ(all[3 * r + k].id, record_of(r * 10 + k).id) << r << " " << k;
  EXPECT_TRUE(all_gather_vector(world, std::vector<Record>{}).empty());
}

TEST(TypedCollectives, BroadcastVectorAndValueTakeTheRootsLengthAndContents) {
  MpiCommunicator world(MPI_COMM_WORLD);
  const int root = world.world_size() - 1;
  // Every rank starts with a vector of another length.
  std::vector<int64_t> v(static_cast<size_t>(world.rank() + 2), -1);
  if (world.rank() == root)
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = 1000 + static_cast<int64_t>(i);
  broadcast_vector(world, v, root);
  ASSERT_EQ(v.size(), static_cast<size_t>(root + 2));
  for (size_t i = 0; i < v.size(); ++i)
    EXPECT_EQ(v[i], 1000 + static_cast<int64_t>(i));
  Record r = record_of(world.rank());
  broadcast_value(world, r, root);
  EXPECT_EQ(r.id, record_of(root).id);
  EXPECT_EQ(r.value, record_of(root).value);
}

TEST(TypedCollectives, AllReduceFieldsReducesMemberByMember) {
  MpiCommunicator world(MPI_COMM_WORLD);
  struct Votes {
    double a, b, c;
    auto fields() { return std::tie(a, b, c); }
  };
  const int rank = world.rank(), W = world.world_size();
  Votes most{static_cast<double>(rank), -static_cast<double>(rank), rank == W - 1 ? 1.0 : 0.0};
  all_reduce_fields(world, most, ReduceOp::max);
  EXPECT_EQ(most.a, W - 1);
  EXPECT_EQ(most.b, 0);
  EXPECT_EQ(most.c, 1);
  struct Counts {
    int32_t x, y;
    auto fields() { return std::tie(x, y); }
  } least{rank + 5, 7 - rank};
  all_reduce_fields(world, least, ReduceOp::min);
  EXPECT_EQ(least.x, 5);
  EXPECT_EQ(least.y, 7 - (W - 1));
}

TEST(TypedCollectives, AllGatherVectorOfUnequalLengthsFailsOnEveryRank) {
  MpiCommunicator world(MPI_COMM_WORLD);
  if (world.world_size() < 2) GTEST_SKIP() << "needs two ranks";
  const std::vector<int64_t> mine(static_cast<size_t>(world.rank() + 1), 3);
  EXPECT_THROW(all_gather_vector(world, mine), RuntimeFailure);
}

TEST(TypedCollectives, StringsOfAnyLengthAndBytesArriveWhole) {
  MpiCommunicator world(MPI_COMM_WORLD);
  const auto all = all_gather_strings(world, string_of(world.rank()));
  ASSERT_EQ(all.size(), static_cast<size_t>(world.world_size()));
  for (int r = 0; r < world.world_size(); ++r)
    EXPECT_EQ(all[r], string_of(r)) << "rank " << r;
  for (int root = 0; root < world.world_size(); ++root) {
    std::string s = world.rank() == root ? string_of(root) : std::string(5, 'x');
    broadcast_string(world, s, root);
    EXPECT_EQ(s, string_of(root)) << "root " << root;
  }
}

}  // namespace
}  // namespace dpt::comm
