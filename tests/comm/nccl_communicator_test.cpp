// NcclCommunicator on real GPUs (labels gpu;mpi; the MPI+GPU test main skips without them):
// collectives checked against values every rank computes locally from (seed, rank), as
// nccl-tests' verifiable mode does, the [Sync Streams] event contract, and the [Watchdog].
#include "comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "comm/mpi_communicator.h"
#include "common/errors.h"
#include "kernels/device_buffer.h"
#include "tests/mpi_test_main.h"

namespace dpt::comm {
namespace {

using kernels::copy_to_device;
using kernels::copy_to_host;
using kernels::CudaEventHandle;
using kernels::CudaStreamHandle;
using kernels::DeviceBuffer;
using kernels::fill_device_bytes;
using kernels::PinnedBuffer;
using Clock = std::chrono::steady_clock;

// Sizes: one element, an odd handful, and an odd count large enough for NCCL to split the
// buffer over several channels and chunks.
const std::vector<size_t> kCounts = {1, 7, 1000003};

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t draw(uint64_t seed, int rank, size_t i) {
  return splitmix64(splitmix64(seed ^ (static_cast<uint64_t>(rank) << 40)) ^ i);
}

// Element i of rank r's input. Floats are multiples of 1/64 in [-15.625, 15.625]: exact in f32
// and f64, so a sum over any number of ranks a test will see is exact in any order, and
// expected sums need no tolerance. Integers use their full width, so a dtype mapped to a
// narrower NCCL type fails.
template <typename T>
T input(uint64_t seed, int rank, size_t i) {
  const uint64_t h = draw(seed, rank, i);
  if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(static_cast<int64_t>(h % 2001) - 1000) / static_cast<T>(64);
  } else if constexpr (std::is_same_v<T, uint8_t>) {
    return static_cast<uint8_t>(h % 16);  // sums of up to 15 ranks stay below 256
  } else if constexpr (std::is_same_v<T, int32_t>) {
    return static_cast<int32_t>(h % 2000001) - 1000000 + (1 << 26);  // 31 ranks fit
  } else {
    return static_cast<T>((h % 1000) << 40) + static_cast<T>(rank);  // beyond 32 bits
  }
}

template <typename T>
std::vector<T> inputs(uint64_t seed, int rank, size_t n) {
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = input<T>(seed, rank, i);
  return v;
}

template <typename T>
DeviceBuffer<T> upload(const std::vector<T>& h) {
  DeviceBuffer<T> d(h.size());
  copy_to_device(d.get(), h.data(), h.size(), nullptr);  // [Host copies]
  return d;
}

template <typename T>
std::vector<T> download(const DeviceBuffer<T>& d) {
  std::vector<T> h(d.size());
  copy_to_host(h.data(), d.get(), h.size(), nullptr);
  return h;
}

// A device buffer every byte of which is 0xFF: NaN for floats, so an unwritten element fails.
template <typename T>
DeviceBuffer<T> poisoned(size_t n) {
  DeviceBuffer<T> d(n);
  fill_device_bytes(d.get(), 0xFF, d.bytes(), nullptr);
  return d;
}

// Elementwise equality, reporting the first few differences instead of two whole vectors.
template <typename T>
void expect_same(const std::vector<T>& got, const std::vector<T>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  size_t bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; ++i) {
    if (!(got[i] == expected[i])) {  // NaN poison never compares equal
      ++bad;
      ADD_FAILURE() << "element " << i << ": got " << got[i] << ", expected " << expected[i];
    }
  }
}

// Host work on a stream (cudaLaunchHostFunc): holds the stream for `ms` milliseconds, so that
// whatever is queued behind it is visibly late.
void CUDART_CB sleep_host(void* ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(*static_cast<const int*>(ms)));
}

class NcclCommunicatorTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      mpi_ = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
      nccl_ = std::make_unique<NcclCommunicator>(*mpi_, local_device());
    } catch (const std::exception& e) {
      setup_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    if (nccl_ && !nccl_->aborted()) nccl_->destroy();
    nccl_.reset();
    mpi_.reset();
  }
  void SetUp() override {
    ASSERT_TRUE(setup_error_.empty()) << "NcclCommunicator construction failed: " << setup_error_;
    ASSERT_FALSE(nccl_->aborted()) << "an earlier test aborted the shared communicator";
  }

  static int local_device() { return test::mpi_session().placement().local_rank; }
  static NcclCommunicator& nccl() { return *nccl_; }
  static int rank() { return nccl_->rank(); }
  static int world() { return nccl_->world_size(); }

  // all_reduce of every rank's input(seed, rank) against the reduction computed here.
  template <typename T>
  static void check_all_reduce(ReduceOp op, uint64_t seed) {
    for (size_t n : kCounts) {
      SCOPED_TRACE("count " + std::to_string(n) + ", op " + reduce_op_name(op));
      DeviceBuffer<T> buf = upload(inputs<T>(seed, rank(), n));
      nccl().all_reduce(buf.get(), n, dtype_of<T>(), op);
      nccl().synchronize();
      const std::vector<T> got = download(buf);
      size_t bad = 0;
      for (size_t i = 0; i < n && bad < 5; ++i) {
        double sum = 0, max = -std::numeric_limits<double>::infinity();
        for (int r = 0; r < world(); ++r) {
          const double x = input<T>(seed, r, i);
          sum += x;
          max = std::max(max, x);
        }
        const double g = got[i];
        bool ok = false;
        if (op == ReduceOp::sum) ok = g == sum;  // exact: see input()
        if (op == ReduceOp::max) ok = g == max;
        if (op == ReduceOp::avg) {
          // NCCL scales each input by 1/world before summing: one rounding per input and per
          // addition, exact for a power-of-two world.
          const double eps = std::numeric_limits<T>::epsilon();
          ok = std::abs(g - sum / world()) <= 2.0 * world() * eps * 16.0;
        }
        if (!ok) {
          ++bad;
          ADD_FAILURE() << "element " << i << ": got " << g << ", expected "
                        << (op == ReduceOp::max   ? max
                            : op == ReduceOp::sum ? sum
                                                  : sum / world());
        }
      }
    }
  }

  static inline std::unique_ptr<MpiCommunicator> mpi_;
  static inline std::unique_ptr<NcclCommunicator> nccl_;
  static inline std::string setup_error_;
};

TEST_F(NcclCommunicatorTest, BackendNamesNcclAndItsVersion) {
  EXPECT_EQ(nccl().backend().rfind("nccl 2.", 0), 0u) << nccl().backend();
  EXPECT_EQ(nccl().rank(), test::mpi_session().rank());
  EXPECT_EQ(nccl().world_size(), test::mpi_session().world_size());
  EXPECT_NE(nccl().stream(), nullptr);
}

TEST_F(NcclCommunicatorTest, AllReduceSumF32EqualsSumOfEveryRanksInput) {
  check_all_reduce<float>(ReduceOp::sum, 11);
}
TEST_F(NcclCommunicatorTest, AllReduceSumF64EqualsSumOfEveryRanksInput) {
  check_all_reduce<double>(ReduceOp::sum, 12);
}
TEST_F(NcclCommunicatorTest, AllReduceAvgF32EqualsMeanOfEveryRanksInput) {
  check_all_reduce<float>(ReduceOp::avg, 13);
}
TEST_F(NcclCommunicatorTest, AllReduceAvgF64EqualsMeanOfEveryRanksInput) {
  check_all_reduce<double>(ReduceOp::avg, 14);
}
TEST_F(NcclCommunicatorTest, AllReduceMaxF32EqualsMaxOfEveryRanksInput) {
  check_all_reduce<float>(ReduceOp::max, 15);
}
TEST_F(NcclCommunicatorTest, AllReduceMaxF64EqualsMaxOfEveryRanksInput) {
  check_all_reduce<double>(ReduceOp::max, 16);
}

TEST_F(NcclCommunicatorTest, IntegerSumsUseEachDtypesFullWidth) {
  check_all_reduce<int32_t>(ReduceOp::sum, 17);
  check_all_reduce<int64_t>(ReduceOp::sum, 18);
  check_all_reduce<uint64_t>(ReduceOp::sum, 19);
  if (world() < 16) check_all_reduce<uint8_t>(ReduceOp::sum, 20);
}

TEST_F(NcclCommunicatorTest, AvgOfIntegersIsRejectedBeforeAnyTraffic) {
  DeviceBuffer<int32_t> buf(4);
  EXPECT_THROW(nccl().all_reduce(buf.get(), 4, DType::i32, ReduceOp::avg), RuntimeFailure);
  EXPECT_FALSE(nccl().aborted());  // a usage check, not a failed collective
}

TEST_F(NcclCommunicatorTest, BroadcastFromLastRankReachesEveryRank) {
  const int root = world() - 1;
  for (size_t n : kCounts) {
    SCOPED_TRACE("count " + std::to_string(n));
    DeviceBuffer<double> buf = upload(inputs<double>(21, rank(), n));
    nccl().broadcast(buf.get(), n, DType::f64, root);
    nccl().synchronize();
    expect_same(download(buf), inputs<double>(21, root, n));
  }
}

TEST_F(NcclCommunicatorTest, AllGatherPlacesRankRsBlockAtOffsetRTimesCount) {
  for (size_t n : kCounts) {
    SCOPED_TRACE("count " + std::to_string(n));
    DeviceBuffer<float> send = upload(inputs<float>(22, rank(), n));
    DeviceBuffer<float> recv = poisoned<float>(n * world());
    nccl().all_gather(send.get(), recv.get(), n, DType::f32);
    nccl().synchronize();
    std::vector<float> expected;
    for (int r = 0; r < world(); ++r) {
      const std::vector<float> part = inputs<float>(22, r, n);
      expected.insert(expected.end(), part.begin(), part.end());
    }
    expect_same(download(recv), expected);
  }
}

// [Sync Streams]: the compute stream is held by host work, then writes the input; the comm
// stream must wait for it through the event, the host must not, and the compute stream must see
// the reduced values through the second event.
TEST_F(NcclCommunicatorTest, CollectiveWaitsForComputeStreamThroughEventsWithoutBlockingHost) {
  const size_t n = 1000003;
  const uint64_t seed = 23;
  CudaStreamHandle compute;
  CudaEventHandle ready, done;
  PinnedBuffer<float> in(n), out(n);
  const std::vector<float> mine = inputs<float>(seed, rank(), n);
  std::copy(mine.begin(), mine.end(), in.get());
  DeviceBuffer<float> buf = poisoned<float>(n);
  // The same size once beforehand, so that NCCL's connection set-up for it is not timed below.
  nccl().all_reduce(buf.get(), n, DType::f32, ReduceOp::sum);
  nccl().synchronize();
  fill_device_bytes(buf.get(), 0xFF, buf.bytes(), nullptr);
  DPT_CHECK_CUDA(cudaDeviceSynchronize());

  static const int kHoldMs = 500;
  DPT_CHECK_CUDA(cudaLaunchHostFunc(compute.get(), sleep_host, const_cast<int*>(&kHoldMs)));
  DPT_CHECK_CUDA(
      cudaMemcpyAsync(buf.get(), in.get(), buf.bytes(), cudaMemcpyHostToDevice, compute.get()));
  DPT_CHECK_CUDA(cudaEventRecord(ready.get(), compute.get()));

  const auto t0 = Clock::now();
  nccl().wait_event(ready.get());
  nccl().all_reduce(buf.get(), n, DType::f32, ReduceOp::sum);
  nccl().record_event(done.get());
  const double enqueue_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const cudaError_t busy = cudaStreamQuery(nccl().stream());

  DPT_CHECK_CUDA(cudaStreamWaitEvent(compute.get(), done.get(), 0));
  DPT_CHECK_CUDA(
      cudaMemcpyAsync(out.get(), buf.get(), buf.bytes(), cudaMemcpyDeviceToHost, compute.get()));
  DPT_CHECK_CUDA(cudaStreamSynchronize(compute.get()));
  nccl().synchronize();

  EXPECT_LT(enqueue_ms, kHoldMs / 2.0) << "wait_event/all_reduce/record_event blocked the host";
  EXPECT_EQ(busy, cudaErrorNotReady) << "the comm stream did not wait for the compute stream";
  size_t bad = 0;
  for (size_t i = 0; i < n && bad < 5; ++i) {
    double sum = 0;
    for (int r = 0; r < world(); ++r)
      sum += input<float>(seed, r, i);
    if (out.get()[i] != sum) {
      ++bad;
      ADD_FAILURE() << "element " << i << ": got " << out.get()[i] << ", expected " << sum;
    }
  }
}

TEST_F(NcclCommunicatorTest, SynchronizeAndBarrierReturnOnceTheCommStreamIsIdle) {
  DeviceBuffer<float> buf = upload(inputs<float>(24, rank(), 4096));
  for (int i = 0; i < 8; ++i)
    nccl().all_reduce(buf.get(), 4096, DType::f32, ReduceOp::max);
  nccl().synchronize();
  EXPECT_EQ(cudaStreamQuery(nccl().stream()), cudaSuccess);
  nccl().barrier();
  EXPECT_EQ(cudaStreamQuery(nccl().stream()), cudaSuccess);
  nccl().all_reduce(buf.get(), 0, DType::f32, ReduceOp::sum);  // count 0 enqueues nothing
  nccl().synchronize();
}

TEST_F(NcclCommunicatorTest, TimeoutFromEnvironmentParsesSecondsAndRejectsGarbage) {
  const char* saved = std::getenv("DPT_NCCL_TIMEOUT_S");
  const std::string keep = saved != nullptr ? saved : "";
  unsetenv("DPT_NCCL_TIMEOUT_S");
  EXPECT_EQ(NcclCommunicator::timeout_from_env(), 600.0);
  setenv("DPT_NCCL_TIMEOUT_S", "2.5", 1);
  EXPECT_EQ(NcclCommunicator::timeout_from_env(), 2.5);
  for (const char* bad : {"0", "-3", "ten", "5s", "inf"}) {
    setenv("DPT_NCCL_TIMEOUT_S", bad, 1);
    EXPECT_THROW(NcclCommunicator::timeout_from_env(), UsageError) << bad;
  }
  if (saved != nullptr)
    setenv("DPT_NCCL_TIMEOUT_S", keep.c_str(), 1);
  else
    unsetenv("DPT_NCCL_TIMEOUT_S");
}

// [Watchdog]: a comm stream that cannot finish (here: held behind host work longer than the
// timeout, a stand-in for a peer that never arrives) ends in an exception and an aborted
// communicator, not a hang. A second communicator, so the shared one stays live. No collective
// is queued behind the hold, so the abort never races a half-launched NCCL kernel.
TEST_F(NcclCommunicatorTest, SynchronizeAbortsAndThrowsAfterTimeoutInsteadOfHanging) {
  NcclCommunicator short_fuse(*mpi_, local_device(), 0.5);
  CudaStreamHandle compute;
  CudaEventHandle ready;
  static const int kHoldMs = 2500;
  DPT_CHECK_CUDA(cudaLaunchHostFunc(compute.get(), sleep_host, const_cast<int*>(&kHoldMs)));
  DPT_CHECK_CUDA(cudaEventRecord(ready.get(), compute.get()));
  short_fuse.wait_event(ready.get());

  const auto t0 = Clock::now();
  std::string what;
  try {
    short_fuse.synchronize();
  } catch (const RuntimeFailure& e) {
    what = e.what();
  }
  const double waited_s = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_NE(what.find("did not finish within"), std::string::npos) << what;
  EXPECT_NE(what.find("rank " + std::to_string(rank())), std::string::npos) << what;
  // The message above proves the watchdog fired while the stream was still held (a finished
  // stream returns without throwing). The upper bound only says "returned": ncclCommAbort may
  // free device memory, which can wait for the held compute stream.
  EXPECT_GE(waited_s, 0.45);
  EXPECT_LT(waited_s, 30.0);
  EXPECT_TRUE(short_fuse.aborted());
  DeviceBuffer<float> buf(1);
  EXPECT_THROW(short_fuse.all_reduce(buf.get(), 1, DType::f32, ReduceOp::sum), RuntimeFailure);
  short_fuse.destroy();  // a no-op once aborted
  DPT_CHECK_CUDA(cudaStreamSynchronize(compute.get()));
}

}  // namespace
}  // namespace dpt::comm
