// MpiCommunicator's collectives, checked nccl-tests "verifiable" style: every rank derives each
// rank's inputs from (seed, rank), so it computes the expected result alone, with no gather.
#include "comm/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "common/errors.h"
#include "common/rng.h"
#include "tests/mpi_test_main.h"

namespace {

using dpt::comm::DType;
using dpt::comm::dtype_name;
using dpt::comm::dtype_of;
using dpt::comm::MpiCommunicator;
using dpt::comm::reduce_op_name;
using dpt::comm::ReduceOp;

constexpr uint64_t kSeed = 0x5eed'c011'ec71'0e5ull;
// Odd counts, so no chunk or vector width divides them evenly.
constexpr size_t kCounts[] = {1, 7, 1001};

// Input i of `rank`, chosen so that any sum over a few ranks is exact and == can compare:
// floats are integers in [-1024, 1024] times 1/8 (a dyadic fraction, 14 significant bits at
// most after summing). Integers use all but the top 8 bits of their width, so that a value cut
// to 32 bits or passed through a double shows, yet sums over up to 256 ranks cannot overflow;
// u8 keeps 6 bits, for sums over up to 4 ranks ([Collective contract]: sums must not overflow).
template <typename T>
T exact_value(uint64_t seed, int rank, size_t i) {
  const uint64_t bits = dpt::random_u64(seed, static_cast<uint64_t>(rank), i);
  if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(static_cast<int64_t>(bits % 2049) - 1024) * T(0.125);
  } else if constexpr (sizeof(T) == 1) {
    return static_cast<T>(bits & 63);
  } else {
    // Keeping T's low bits, then an arithmetic shift for signed T: both signs, |v| < 2^(w-9).
    return static_cast<T>(static_cast<T>(bits) >> 8);
  }
}

// Input i of `rank` in [-1, 1) with all of T's precision: sums round, so compare with tolerance.
template <typename T>
T random_value(uint64_t seed, int rank, size_t i) {
  return static_cast<T>(2.0 * dpt::random_unit(seed, static_cast<uint64_t>(rank), i) - 1.0);
}

template <typename T>
T reduce_expected(ReduceOp op, uint64_t seed, int world_size, size_t i) {
  T acc = exact_value<T>(seed, 0, i);
  for (int r = 1; r < world_size; ++r) {
    const T v = exact_value<T>(seed, r, i);
    if (op == ReduceOp::max) {
      acc = std::max(acc, v);
    } else if (op == ReduceOp::min) {
      acc = std::min(acc, v);
    } else {
      acc = static_cast<T>(acc + v);  // the cast undoes u8's promotion to int
    }
  }
  if constexpr (std::is_floating_point_v<T>) {
    // [Collective contract]: avg is the sum times the reciprocal rounded once in T.
    if (op == ReduceOp::avg) acc = acc * (T(1) / static_cast<T>(world_size));
  }
  return acc;
}

// Runs one all_reduce of exact values on `comm` and checks every element, on every rank.
template <typename T>
void expect_exact_all_reduce(MpiCommunicator& comm, ReduceOp op, size_t count, uint64_t seed) {
  std::vector<T> buf(count);
  for (size_t i = 0; i < count; ++i) {
    buf[i] = exact_value<T>(seed, comm.rank(), i);
  }
  comm.all_reduce(std::span<T>(buf), op);
  size_t mismatches = 0;
  size_t first = 0;
  for (size_t i = 0; i < count; ++i) {
    if (buf[i] != reduce_expected<T>(op, seed, comm.world_size(), i)) {
      if (mismatches++ == 0) first = i;
    }
  }
  EXPECT_EQ(mismatches, 0u) << reduce_op_name(op) << " over " << dtype_name(dtype_of<T>())
                            << ", count " << count << ": first wrong element " << first << " is "
                            << +buf[first] << ", expected "
                            << +reduce_expected<T>(op, seed, comm.world_size(), first);
}

template <typename... Ts>
void expect_exact_all_reduce_for(ReduceOp op) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  uint64_t seed = kSeed + static_cast<uint64_t>(op);
  for (size_t count : kCounts) {
    (expect_exact_all_reduce<Ts>(comm, op, count, seed++), ...);
  }
}

TEST(MpiCommunicator, ReportsRankAndWorldSizeOfBaseCommunicator) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  int rank = -1;
  int size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(comm.rank(), rank);
  EXPECT_EQ(comm.world_size(), size);
  EXPECT_EQ(comm.backend(), "mpi");
}

TEST(MpiCommunicator, AllReduceSumMatchesLocalExpectationForEveryDtype) {
  expect_exact_all_reduce_for<float, double, int32_t, int64_t, uint64_t, uint8_t>(ReduceOp::sum);
}

TEST(MpiCommunicator, AllReduceMaxMatchesLocalExpectationForEveryDtype) {
  expect_exact_all_reduce_for<float, double, int32_t, int64_t, uint64_t, uint8_t>(ReduceOp::max);
}

TEST(MpiCommunicator, AllReduceMinMatchesLocalExpectationForEveryDtype) {
  expect_exact_all_reduce_for<float, double, int32_t, int64_t, uint64_t, uint8_t>(ReduceOp::min);
}

TEST(MpiCommunicator, AllReduceAverageMatchesLocalExpectation) {
  expect_exact_all_reduce_for<float, double>(ReduceOp::avg);
}

// Full-precision inputs: MPI may add in any order, so the sum is within rounding of the exact
// one. Bound: n-1 additions of partial sums below n in magnitude, each off by eps/2 of it.
template <typename T>
void expect_random_all_reduce_within_tolerance(MpiCommunicator& comm, ReduceOp op) {
  const size_t count = 1001;
  const uint64_t seed = kSeed ^ 0xf10a7;
  std::vector<T> buf(count);
  for (size_t i = 0; i < count; ++i) {
    buf[i] = random_value<T>(seed, comm.rank(), i);
  }
  comm.all_reduce(std::span<T>(buf), op);
  const int n = comm.world_size();
  const double tolerance = n * n * static_cast<double>(std::numeric_limits<T>::epsilon());
  size_t mismatches = 0;
  for (size_t i = 0; i < count; ++i) {
    double expected = 0.0;
    for (int r = 0; r < n; ++r) {
      expected += static_cast<double>(random_value<T>(seed, r, i));
    }
    if (op == ReduceOp::avg) expected /= n;
    if (!(std::abs(static_cast<double>(buf[i]) - expected) <= tolerance)) ++mismatches;
  }
  EXPECT_EQ(mismatches, 0u) << reduce_op_name(op) << " over " << dtype_name(dtype_of<T>());
}

TEST(MpiCommunicator, AllReduceOfRandomFloatsIsWithinRoundingOfExactSum) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg}) {
    expect_random_all_reduce_within_tolerance<float>(comm, op);
    expect_random_all_reduce_within_tolerance<double>(comm, op);
  }
}

TEST(MpiCommunicator, AllReduceOfModestBufferMatchesLocalExpectation) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  expect_exact_all_reduce<float>(comm, ReduceOp::sum, (size_t{1} << 20) + 3, kSeed ^ 0xb16);
}

// Drives the chunked path of MpiCommunicator::all_reduce with a chunk of 7 elements, so a slip
// between element and byte offsets, or a lost remainder, shows on a buffer of a few KiB.
template <typename T>
void expect_chunked_all_reduce(ReduceOp op, size_t count, size_t max_chunk, uint64_t seed) {
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<T> buf(count);
  for (size_t i = 0; i < count; ++i) {
    buf[i] = exact_value<T>(seed, rank, i);
  }
  dpt::comm::detail::mpi_all_reduce_chunked(MPI_COMM_WORLD, size, buf.data(), count, dtype_of<T>(),
                                            op, max_chunk);
  size_t mismatches = 0;
  for (size_t i = 0; i < count; ++i) {
    if (buf[i] != reduce_expected<T>(op, seed, size, i)) ++mismatches;
  }
  EXPECT_EQ(mismatches, 0u) << reduce_op_name(op) << " over " << dtype_name(dtype_of<T>())
                            << ", count " << count << " in chunks of " << max_chunk;
}

TEST(MpiCommunicator, AllReduceSplitIntoManyChunksMatchesLocalExpectation) {
  // 1003 = 143 * 7 + 2: many full chunks and a short last one.
  expect_chunked_all_reduce<double>(ReduceOp::avg, 1003, 7, kSeed + 11);
  expect_chunked_all_reduce<int64_t>(ReduceOp::sum, 1003, 7, kSeed + 12);
  expect_chunked_all_reduce<uint8_t>(ReduceOp::max, 1003, 7, kSeed + 13);
  expect_chunked_all_reduce<float>(ReduceOp::min, 14, 7, kSeed + 14);  // exact multiple
}

TEST(MpiCommunicator, AllReduceAverageOnIntegerDtypeThrowsRuntimeFailure) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  std::vector<int32_t> i32(7, 1);
  std::vector<int64_t> i64(7, 1);
  std::vector<uint64_t> u64(7, 1);
  std::vector<uint8_t> u8(7, 1);
  // Refused before any traffic, on every rank alike, so no rank is left in a collective.
  EXPECT_THROW(comm.all_reduce(std::span<int32_t>(i32), ReduceOp::avg), dpt::RuntimeFailure);
  EXPECT_THROW(comm.all_reduce(std::span<int64_t>(i64), ReduceOp::avg), dpt::RuntimeFailure);
  EXPECT_THROW(comm.all_reduce(std::span<uint64_t>(u64), ReduceOp::avg), dpt::RuntimeFailure);
  EXPECT_THROW(comm.all_reduce(std::span<uint8_t>(u8), ReduceOp::avg), dpt::RuntimeFailure);
  try {
    comm.all_reduce(std::span<int32_t>(i32), ReduceOp::avg);
  } catch (const dpt::RuntimeFailure& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("avg"), std::string::npos) << msg;
    EXPECT_NE(msg.find("i32"), std::string::npos) << msg;
  }
  EXPECT_EQ(i32, std::vector<int32_t>(7, 1)) << "a refused all_reduce must leave buf alone";
}

template <typename T>
void expect_broadcast_from(MpiCommunicator& comm, int root, size_t count, uint64_t seed) {
  std::vector<T> buf(count);
  // Non-roots start from their own values, so an element the broadcast skips stays wrong.
  for (size_t i = 0; i < count; ++i) {
    buf[i] = exact_value<T>(seed, comm.rank(), i);
  }
  comm.broadcast(std::span<T>(buf), root);
  size_t mismatches = 0;
  for (size_t i = 0; i < count; ++i) {
    if (buf[i] != exact_value<T>(seed, root, i)) ++mismatches;
  }
  EXPECT_EQ(mismatches, 0u) << "broadcast of " << count << " " << dtype_name(dtype_of<T>())
                            << " from root " << root;
}

TEST(MpiCommunicator, BroadcastFromRootZeroReachesEveryRank) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  for (size_t count : kCounts) {
    expect_broadcast_from<float>(comm, 0, count, kSeed + 21);
    expect_broadcast_from<uint8_t>(comm, 0, count, kSeed + 22);
  }
}

TEST(MpiCommunicator, BroadcastFromLastRankReachesEveryRank) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int last = comm.world_size() - 1;
  for (size_t count : kCounts) {
    expect_broadcast_from<double>(comm, last, count, kSeed + 23);
    expect_broadcast_from<int64_t>(comm, last, count, kSeed + 24);
  }
}

template <typename T>
void expect_all_gather_in_rank_order(MpiCommunicator& comm, size_t count, uint64_t seed) {
  const size_t n = static_cast<size_t>(comm.world_size());
  std::vector<T> send(count);
  for (size_t i = 0; i < count; ++i) {
    send[i] = exact_value<T>(seed, comm.rank(), i);
  }
  // Poisoned with a value no rank sends, so an unwritten block shows.
  std::vector<T> recv(n * count, std::numeric_limits<T>::max());
  comm.all_gather(std::span<const T>(send), std::span<T>(recv));
  size_t mismatches = 0;
  for (size_t r = 0; r < n; ++r) {
    for (size_t i = 0; i < count; ++i) {
      if (recv[r * count + i] != exact_value<T>(seed, static_cast<int>(r), i)) ++mismatches;
    }
  }
  EXPECT_EQ(mismatches, 0u) << "all_gather of " << count << " " << dtype_name(dtype_of<T>());
}

TEST(MpiCommunicator, AllGatherPlacesEachRankBlockAtItsRankOffset) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  for (size_t count : kCounts) {
    expect_all_gather_in_rank_order<int32_t>(comm, count, kSeed + 31);
    expect_all_gather_in_rank_order<double>(comm, count, kSeed + 32);
  }
}

TEST(MpiCommunicator, AllGatherAboveIntCountLimitThrowsRuntimeFailure) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const size_t too_many = static_cast<size_t>(INT_MAX) + 1;
  // Refused before any buffer is touched, so null pointers are safe here.
  EXPECT_THROW(comm.all_gather(nullptr, nullptr, too_many, DType::f32), dpt::RuntimeFailure);
}

TEST(MpiCommunicator, BarrierHoldsEveryRankUntilTheLastArrives) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  constexpr double kDelaySeconds = 0.1;
  comm.barrier();
  const double start = MPI_Wtime();
  if (comm.rank() == 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(kDelaySeconds));
  }
  comm.barrier();
  const double waited = MPI_Wtime() - start;
  // Ranks may leave the first barrier a little apart; half the delay absorbs that skew.
  if (comm.rank() != 0) {
    EXPECT_GE(waited, kDelaySeconds / 2);
  }
}

TEST(MpiCommunicator, SelfCommunicatorHasOneRankAndAllReduceIsIdentity) {
  MpiCommunicator self(MPI_COMM_SELF);
  EXPECT_EQ(self.rank(), 0);
  EXPECT_EQ(self.world_size(), 1);
  const int world_rank = dpt::test::mpi_session().rank();
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max, ReduceOp::min}) {
    std::vector<float> f32(1001);
    std::vector<double> f64(1001);
    for (size_t i = 0; i < f32.size(); ++i) {
      f32[i] = random_value<float>(kSeed + 41, world_rank, i);
      f64[i] = random_value<double>(kSeed + 42, world_rank, i);
    }
    const std::vector<float> f32_in = f32;
    const std::vector<double> f64_in = f64;
    self.all_reduce(std::span<float>(f32), op);
    self.all_reduce(std::span<double>(f64), op);
    EXPECT_EQ(f32, f32_in) << reduce_op_name(op);
    EXPECT_EQ(f64, f64_in) << reduce_op_name(op);
  }
  std::vector<int64_t> i64(7);
  for (size_t i = 0; i < i64.size(); ++i) {
    i64[i] = exact_value<int64_t>(kSeed + 43, world_rank, i);
  }
  const std::vector<int64_t> i64_in = i64;
  self.all_reduce(std::span<int64_t>(i64), ReduceOp::sum);
  EXPECT_EQ(i64, i64_in);
}

TEST(MpiCommunicator, FailedCollectiveThrowsRuntimeFailureNamingCallRankAndHost) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  std::vector<float> buf(7, 1.0f);
  std::string msg;
  try {
    // No rank has this rank number; every rank's MPI rejects it before any traffic.
    comm.broadcast(std::span<float>(buf), comm.world_size());
  } catch (const dpt::RuntimeFailure& e) {
    msg = e.what();
  }
  // EXPECT, not ASSERT: returning early here would skip the all_reduce below on this rank only.
  EXPECT_FALSE(msg.empty()) << "broadcast from a root past the last rank did not throw";
  const auto& place = dpt::test::mpi_session().placement();
  EXPECT_NE(msg.find("MPI_Bcast"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rank " + std::to_string(place.rank) + " on host " + place.host),
            std::string::npos)
      << msg;

  // The communicator stays usable after a refused call.
  std::vector<int32_t> one(1, 1);
  comm.all_reduce(std::span<int32_t>(one), ReduceOp::sum);
  EXPECT_EQ(one[0], comm.world_size());
}

TEST(MpiCommunicator, ConstructingFromNullCommunicatorThrowsRuntimeFailure) {
  EXPECT_THROW(MpiCommunicator comm(MPI_COMM_NULL), dpt::RuntimeFailure);
}

}  // namespace
