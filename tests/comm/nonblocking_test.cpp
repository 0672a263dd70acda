// Non-blocking collectives of the MPI backend ([Collective contract], in flight): several
// requests at once, completed by test() or wait() in any order, with every expected value
// computed locally from (seed, rank) as nccl-tests does. Floating sums are [Rank-order sum]s,
// so the expected bits are the rank-order sum computed here, whatever the buffer's split.
#include <mpi.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "comm/mpi_communicator.h"
#include "common/errors.h"
#include "common/rng.h"

namespace {

using dpt::comm::DType;
using dpt::comm::dtype_of;
using dpt::comm::MpiCommunicator;
using dpt::comm::ReduceOp;
using dpt::comm::Request;
using dpt::comm::Shard;
using dpt::comm::shard_of;

constexpr uint64_t kSeed = 0x1b10'c4ed'5eedull;

// Full-precision values in [-1, 1): sums round, so a different association shows in the bits.
template <typename T>
T value_of(uint64_t seed, int rank, size_t i) {
  return static_cast<T>(2.0 * dpt::random_unit(seed, static_cast<uint64_t>(rank), i) - 1.0);
}

template <typename T>
std::vector<T> values_of(uint64_t seed, int rank, size_t count) {
  std::vector<T> v(count);
  for (size_t i = 0; i < count; ++i)
    v[i] = value_of<T>(seed, rank, i);
  return v;
}

// ((x_0 + x_1) + x_2) + ... in T, then times 1/world rounded once in T for avg.
template <typename T>
T rank_order(ReduceOp op, uint64_t seed, int world, size_t i) {
  T acc = value_of<T>(seed, 0, i);
  for (int r = 1; r < world; ++r)
    acc += value_of<T>(seed, r, i);
  if (op == ReduceOp::avg) acc *= T(1) / static_cast<T>(world);
  return acc;
}

template <typename T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// Elements of `got` that differ in any bit from the rank-order reduction of elements
// [first, first + got.size()).
template <typename T>
size_t wrong_elements(std::span<const T> got, ReduceOp op, uint64_t seed, int world,
                      size_t first = 0) {
  size_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!same_bits(got[i], rank_order<T>(op, seed, world, first + i))) ++wrong;
  return wrong;
}

TEST(ShardOf, ShardsTileTheCountInRankOrderBalancedToOneElement) {
  for (size_t count : {size_t{0}, size_t{1}, size_t{5}, size_t{7}, size_t{1001}}) {
    for (int world : {1, 2, 3, 4, 7}) {
      size_t next = 0;
      for (int r = 0; r < world; ++r) {
        const Shard s = shard_of(count, world, r);
        EXPECT_EQ(s.offset, next) << count << " over " << world << ", rank " << r;
        EXPECT_EQ(s.count, count / world + (static_cast<size_t>(r) < count % world ? 1 : 0));
        next += s.count;
      }
      EXPECT_EQ(next, count) << count << " over " << world;
    }
  }
}

TEST(NonBlocking, SeveralAllReducesInFlightMatchRankOrderSumsBitForBit) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.world_size();
  // Odd sizes, one that leaves some ranks an empty shard, and both float types.
  std::vector<float> a = values_of<float>(kSeed + 1, comm.rank(), 1001);
  std::vector<double> b = values_of<double>(kSeed + 2, comm.rank(), 7);
  std::vector<float> c = values_of<float>(kSeed + 3, comm.rank(), 2);
  std::vector<float> d = values_of<float>(kSeed + 4, comm.rank(), (size_t{1} << 18) + 5);
  Request ra = comm.iall_reduce(std::span<float>(a), ReduceOp::avg);
  Request rb = comm.iall_reduce(std::span<double>(b), ReduceOp::sum);
  Request rc = comm.iall_reduce(std::span<float>(c), ReduceOp::sum);
  Request rd = comm.iall_reduce(std::span<float>(d), ReduceOp::avg);
  EXPECT_EQ(ra.done() && rb.done() && rc.done() && rd.done(), n == 1)
      << "on more than one rank a request is in flight until completed";
  // Completed out of issue order: the last one by polling, then the others by wait().
  while (!rd.test()) {
  }
  EXPECT_TRUE(rd.done());
  rb.wait();
  ra.wait();
  rc.wait();
  EXPECT_EQ(wrong_elements<float>(a, ReduceOp::avg, kSeed + 1, n), 0u);
  EXPECT_EQ(wrong_elements<double>(b, ReduceOp::sum, kSeed + 2, n), 0u);
  EXPECT_EQ(wrong_elements<float>(c, ReduceOp::sum, kSeed + 3, n), 0u);
  EXPECT_EQ(wrong_elements<float>(d, ReduceOp::avg, kSeed + 4, n), 0u);
}

// [In-flight order]: each rank completes the same requests in its own order (rotated by rank,
// half by polling), so their later stages start at different moments on different ranks; every
// request must still finish with its own values, and nothing may hang.
TEST(NonBlocking, RequestsCompletedInADifferentOrderOnEachRankAllFinish) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.world_size();
  constexpr int kRequests = 8;
  std::vector<std::vector<float>> bufs;
  std::vector<Request> requests;
  for (int k = 0; k < kRequests; ++k) {
    bufs.push_back(values_of<float>(kSeed + 300 + k, comm.rank(), 97 * (k + 1) + k));
    requests.push_back(comm.iall_reduce(std::span<float>(bufs.back()), ReduceOp::avg));
  }
  for (int i = 0; i < kRequests; ++i) {
    Request& r = requests[(i + comm.rank() * 3) % kRequests];
    if (i % 2 == 0) {
      while (!r.test()) {
        for (Request& other : requests)
          other.test();  // advances the others' stages too, at rank-dependent moments
      }
    } else {
      r.wait();
    }
  }
  for (int k = 0; k < kRequests; ++k)
    EXPECT_EQ(wrong_elements<float>(bufs[k], ReduceOp::avg, kSeed + 300 + k, n), 0u)
        << "request " << k;
}

TEST(NonBlocking, BlockingAllReduceIsTheSameRankOrderSum) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  std::vector<double> v = values_of<double>(kSeed + 5, comm.rank(), 4099);
  comm.all_reduce(std::span<double>(v), ReduceOp::sum);
  EXPECT_EQ(wrong_elements<double>(v, ReduceOp::sum, kSeed + 5, comm.world_size()), 0u);
}

TEST(NonBlocking, AllReduceInBucketsEqualsOneFlatAllReduceBitForBit) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const size_t count = 10007;
  const std::vector<float> input = values_of<float>(kSeed + 6, comm.rank(), count);
  std::vector<float> flat = input;
  comm.all_reduce(std::span<float>(flat), ReduceOp::avg);
  // Uneven buckets from the end of the buffer, all in flight at once, as the trainer issues them.
  std::vector<float> bucketed = input;
  const size_t edges[] = {count, 9000, 5003, 5002, 17, 0};
  std::vector<Request> requests;
  for (size_t k = 0; k + 1 < std::size(edges); ++k) {
    const size_t lo = edges[k + 1];
    requests.push_back(
        comm.iall_reduce(std::span<float>(bucketed.data() + lo, edges[k] - lo), ReduceOp::avg));
  }
  for (Request& r : requests)
    r.wait();
  EXPECT_EQ(std::memcmp(flat.data(), bucketed.data(), count * sizeof(float)), 0)
      << "bucketed all-reduce differs from the flat one";
}

template <typename T>
void expect_reduce_scatter(MpiCommunicator& comm, size_t count, ReduceOp op, uint64_t seed,
                           bool in_place) {
  const int n = comm.world_size();
  const Shard mine = shard_of(count, n, comm.rank());
  std::vector<T> send = values_of<T>(seed, comm.rank(), count);
  const std::vector<T> sent = send;
  // Poisoned, so an unwritten element of the shard shows.
  std::vector<T> out(mine.count, std::numeric_limits<T>::quiet_NaN());
  T* recv = in_place ? send.data() + mine.offset : out.data();
  Request r = comm.ireduce_scatter(send.data(), recv, count, dtype_of<T>(), op);
  r.wait();
  EXPECT_EQ(wrong_elements<T>(std::span<const T>(recv, mine.count), op, seed, n, mine.offset), 0u)
      << "reduce_scatter of " << count << (in_place ? " in place" : "");
  if (!in_place) {
    EXPECT_EQ(send, sent) << "reduce_scatter changed its send buffer";
  }
}

TEST(NonBlocking, ReduceScatterLeavesEachRankItsShardOfTheRankOrderSum) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  uint64_t seed = kSeed + 100;
  for (size_t count : {size_t{1}, size_t{2}, size_t{7}, size_t{1001}}) {
    for (bool in_place : {false, true}) {
      expect_reduce_scatter<float>(comm, count, ReduceOp::avg, seed++, in_place);
      expect_reduce_scatter<double>(comm, count, ReduceOp::sum, seed++, in_place);
    }
  }
}

template <typename T>
void expect_all_gather_shards(MpiCommunicator& comm, size_t count, uint64_t seed, bool in_place) {
  const int n = comm.world_size();
  const Shard mine = shard_of(count, n, comm.rank());
  // Each rank holds only its shard of a buffer whose element i is value_of(seed, owner, i).
  std::vector<T> recv(count, std::numeric_limits<T>::max());
  std::vector<T> send(mine.count);
  for (size_t i = 0; i < mine.count; ++i)
    send[i] = value_of<T>(seed, comm.rank(), mine.offset + i);
  if (in_place) std::copy(send.begin(), send.end(), recv.begin() + mine.offset);
  const T* src = in_place ? recv.data() + mine.offset : send.data();
  Request r = comm.iall_gather_shards(src, recv.data(), count, dtype_of<T>());
  r.wait();
  size_t wrong = 0;
  for (int owner = 0; owner < n; ++owner) {
    const Shard s = shard_of(count, n, owner);
    for (size_t i = s.offset; i < s.offset + s.count; ++i)
      if (!same_bits(recv[i], value_of<T>(seed, owner, i))) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << "all_gather_shards of " << count << (in_place ? " in place" : "");
}

TEST(NonBlocking, AllGatherShardsAssemblesEveryRankShardInPlace) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  uint64_t seed = kSeed + 200;
  for (size_t count : {size_t{1}, size_t{2}, size_t{7}, size_t{1001}}) {
    for (bool in_place : {false, true}) {
      expect_all_gather_shards<float>(comm, count, seed++, in_place);
      expect_all_gather_shards<int64_t>(comm, count, seed++, in_place);
    }
  }
}

TEST(NonBlocking, ReduceScatterThenAllGatherEqualsAllReduceBitForBit) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const size_t count = 3001;
  const std::vector<float> input = values_of<float>(kSeed + 7, comm.rank(), count);
  std::vector<float> reduced = input;
  comm.all_reduce(std::span<float>(reduced), ReduceOp::avg);
  // The sharded-optimizer path: reduce-scatter in place, then gather the shards back.
  std::vector<float> buf = input;
  const Shard mine = shard_of(count, comm.world_size(), comm.rank());
  comm.reduce_scatter(buf.data(), buf.data() + mine.offset, count, DType::f32, ReduceOp::avg);
  comm.all_gather_shards(buf.data() + mine.offset, buf.data(), count, DType::f32);
  EXPECT_EQ(std::memcmp(reduced.data(), buf.data(), count * sizeof(float)), 0);
}

// Shard counts the caller chose for a world of n: every pattern a bucket meeting some ranks'
// owned ranges makes (zeros before, between and after, one rank holding everything).
std::vector<std::vector<size_t>> chosen_shards(int n) {
  std::vector<std::vector<size_t>> out;
  std::vector<size_t> c(static_cast<size_t>(n), 0);
  c[0] = 5;
  out.push_back(c);  // the first rank only
  c.assign(static_cast<size_t>(n), 0);
  c.back() = 3;
  out.push_back(c);  // the last rank only
  c.assign(static_cast<size_t>(n), 0);
  for (int r = 0; r < n; ++r)
    c[static_cast<size_t>(r)] = r % 2 == 0 ? 0 : static_cast<size_t>(2 * r + 1);
  out.push_back(c);  // zeros between
  c.assign(static_cast<size_t>(n), 0);
  for (int r = 0; r < n; ++r)
    c[static_cast<size_t>(r)] = static_cast<size_t>(7 + 3 * r);
  out.push_back(c);                                               // all unequal
  out.push_back(std::vector<size_t>(static_cast<size_t>(n), 0));  // nothing at all
  return out;
}

TEST(NonBlocking, ReduceScatterAndAllGatherOfChosenShardsMatchRankOrderSums) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.world_size();
  const size_t me = static_cast<size_t>(comm.rank());
  uint64_t seed = kSeed + 300;
  for (const std::vector<size_t>& counts : chosen_shards(n)) {
    size_t total = 0, offset = 0;
    for (size_t r = 0; r < counts.size(); ++r) {
      if (r < me) offset += counts[r];
      total += counts[r];
    }
    for (bool in_place : {false, true}) {
      std::vector<float> send = values_of<float>(seed, comm.rank(), total);
      std::vector<float> out(counts[me], std::numeric_limits<float>::quiet_NaN());
      float* recv = in_place ? send.data() + offset : out.data();
      comm.ireduce_scatter_v(send.data(), recv, counts, DType::f32, ReduceOp::avg).wait();
      EXPECT_EQ(wrong_elements<float>(std::span<const float>(recv, counts[me]), ReduceOp::avg, seed,
                                      n, offset),
                0u)
          << "reduce_scatter_v of " << total << (in_place ? " in place" : "");
      // Gather them back: every rank's reduced shard lands at its offset.
      std::vector<float> all(total, std::numeric_limits<float>::quiet_NaN());
      std::copy(recv, recv + counts[me], all.begin() + static_cast<std::ptrdiff_t>(offset));
      const float* src = in_place ? all.data() + offset : recv;
      comm.iall_gather_v(src, all.data(), counts, DType::f32).wait();
      EXPECT_EQ(wrong_elements<float>(std::span<const float>(all), ReduceOp::avg, seed, n), 0u)
          << "all_gather_v of " << total << (in_place ? " in place" : "");
      ++seed;
    }
  }
  const std::vector<size_t> short_counts(static_cast<size_t>(n) + 1, 1);
  std::vector<float> buf(static_cast<size_t>(n) + 1);
  EXPECT_THROW(
      comm.ireduce_scatter_v(buf.data(), buf.data(), short_counts, DType::f32, ReduceOp::sum),
      dpt::RuntimeFailure);
}

TEST(NonBlocking, InFlightRequestsInterleaveWithBlockingCollectives) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.world_size();
  std::vector<float> grads = values_of<float>(kSeed + 8, comm.rank(), 513);
  Request pending = comm.iall_reduce(std::span<float>(grads), ReduceOp::sum);
  // A blocking collective issued while the request is in flight, in the same order on every
  // rank ([Collective contract]); the request still completes with the right values.
  std::vector<int64_t> one{1};
  comm.all_reduce(std::span<int64_t>(one), ReduceOp::sum);
  EXPECT_EQ(one[0], n);
  pending.wait();
  EXPECT_EQ(wrong_elements<float>(grads, ReduceOp::sum, kSeed + 8, n), 0u);
}

TEST(NonBlocking, DestroyingARequestInFlightCompletesIt) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  std::vector<double> v = values_of<double>(kSeed + 9, comm.rank(), 301);
  {
    Request r = comm.iall_reduce(std::span<double>(v), ReduceOp::avg);
  }  // the destructor waits, so v holds the result here
  EXPECT_EQ(wrong_elements<double>(v, ReduceOp::avg, kSeed + 9, comm.world_size()), 0u);
  // Moving a request hands over the operation; the moved-from handle is complete and empty.
  std::vector<double> w = values_of<double>(kSeed + 10, comm.rank(), 301);
  Request first = comm.iall_reduce(std::span<double>(w), ReduceOp::sum);
  Request second = std::move(first);
  EXPECT_TRUE(first.done());  // NOLINT(bugprone-use-after-move): the contract of a moved Request
  second.wait();
  EXPECT_EQ(wrong_elements<double>(w, ReduceOp::sum, kSeed + 10, comm.world_size()), 0u);
}

TEST(NonBlocking, RefusedCallsThrowBeforeAnyTraffic) {
  MpiCommunicator comm(MPI_COMM_WORLD);
  std::vector<int32_t> ints(7, 1);
  // Integer reduce-scatter and integer avg are refused on every rank alike.
  EXPECT_THROW(comm.ireduce_scatter(ints.data(), ints.data(), 7, DType::i32, ReduceOp::sum),
               dpt::RuntimeFailure);
  EXPECT_THROW(comm.iall_reduce(std::span<int32_t>(ints), ReduceOp::avg), dpt::RuntimeFailure);
  EXPECT_THROW(comm.ireduce_scatter(nullptr, nullptr, size_t{1} << 31, DType::f32, ReduceOp::sum),
               dpt::RuntimeFailure);
  // The communicator stays usable.
  comm.all_reduce(std::span<int32_t>(ints), ReduceOp::sum);
  EXPECT_EQ(ints[0], comm.world_size());
}

}  // namespace
