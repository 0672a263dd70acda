// The NCCL backend: bootstrap over MPI, collectives enqueued on the comm stream, and the
// host-side watchdog that turns a dead peer into an exception instead of a hang ([Watchdog]).
#include "comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "comm/hang_watchdog.h"
#include "comm/nccl_check.h"
#include "comm/nccl_info.h"
#include "common/errors.h"

// An NCCL call on a live communicator: a failure aborts the communicator first, so that a rank
// that stops here does not leave its NCCL kernels spinning, then throws like DPT_CHECK_NCCL.
#define DPT_NCCL_OR_ABORT(call)                                                               \
  do {                                                                                        \
    const ncclResult_t _dpt_nccl_rc = (call);                                                 \
    if (_dpt_nccl_rc != ncclSuccess) {                                                        \
      abort_and_fail("NCCL", #call, nccl_error_text(_dpt_nccl_rc, comm_), __func__, __FILE__, \
                     __LINE__);                                                               \
    }                                                                                         \
  } while (0)

namespace dpt::comm {
namespace {

constexpr double kDefaultTimeoutS = 600;
// synchronize() polls with a doubling pause, from kFirstPoll up to kPollInterval: a wait that
// ends soon (the common case inside a step) costs tens of microseconds, not a whole millisecond,
// and a long wait still costs the host next to nothing.
constexpr auto kFirstPoll = std::chrono::microseconds(20);
constexpr auto kPollInterval = std::chrono::microseconds(1000);

ncclDataType_t nccl_dtype(DType t) {
  switch (t) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
    case DType::u64:
      return ncclUint64;
    case DType::u8:
      return ncclUint8;
  }
  fail_check("check", "nccl_dtype(t)", "unknown DType " + std::to_string(static_cast<int>(t)),
             __func__, __FILE__, __LINE__);
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return ncclSum;
    case ReduceOp::avg:
      return ncclAvg;
    case ReduceOp::max:
      return ncclMax;
    case ReduceOp::min:
      return ncclMin;
  }
  fail_check("check", "nccl_op(op)", "unknown ReduceOp " + std::to_string(static_cast<int>(op)),
             __func__, __FILE__, __LINE__);
}

// Checked before any traffic, as the MPI backend does: every rank fails the same way.
void check_avg(const char* what, DType dtype, ReduceOp op) {
  DPT_CHECK(op != ReduceOp::avg || dtype == DType::f32 || dtype == DType::f64,
            std::string(what) + " avg is defined for f32 and f64 only, got " + dtype_name(dtype) +
                "; use sum and divide where integer rounding is intended");
}

void check_buffer(const void* buf, size_t count, const char* what) {
  DPT_CHECK(buf != nullptr || count == 0,
            std::string(what) + " got a null buffer for " + std::to_string(count) + " elements");
}

std::string where(int rank, int world_size, int device) {
  return "rank " + std::to_string(rank) + " of " + std::to_string(world_size) + ", CUDA device " +
         std::to_string(device);
}

}  // namespace

double NcclCommunicator::timeout_from_env() {
  const char* text = std::getenv("DPT_NCCL_TIMEOUT_S");
  if (text == nullptr || text[0] == '\0') return kDefaultTimeoutS;
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || !std::isfinite(v) || v <= 0) {
    throw UsageError(std::string("DPT_NCCL_TIMEOUT_S=") + text +
                     ": expected a positive number of seconds (the longest the host waits for "
                     "NCCL work before aborting); unset it for the default of 600");
  }
  return v;
}

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int cuda_device, double timeout_s)
    : rank_(bootstrap.rank()),
      world_size_(bootstrap.world_size()),
      device_(cuda_device),
      timeout_s_(timeout_s) {
  // Local preparation. Whatever fails here is agreed over `bootstrap` below before any rank
  // enters ncclCommInitRank, which would otherwise wait for the failed rank until the job ends.
  ncclUniqueId id{};
  std::exception_ptr local_failure;
  try {
    DPT_CHECK(std::isfinite(timeout_s) && timeout_s > 0,
              "NcclCommunicator timeout must be a positive number of seconds, got " +
                  std::to_string(timeout_s));
    int devices = 0;
    DPT_CHECK_CUDA(cudaGetDeviceCount(&devices));
    DPT_CHECK(cuda_device >= 0 && cuda_device < devices,
              "CUDA device " + std::to_string(cuda_device) + " requested but " +
                  std::to_string(devices) + " visible (CUDA_VISIBLE_DEVICES); " +
                  where(rank_, world_size_, cuda_device));
    DPT_CHECK_CUDA(cudaSetDevice(cuda_device));
    // Highest priority: a collective waiting behind a queue of compute kernels delays every
    // rank, while a compute kernel waiting behind a collective delays only this one.
    int least = 0, greatest = 0;
    DPT_CHECK_CUDA(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    cudaStream_t s = nullptr;
    DPT_CHECK_CUDA(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, greatest));
    stream_ = s;
    DPT_CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&scratch_), sizeof(float)));
    if (rank_ == 0) DPT_CHECK_NCCL(nullptr, ncclGetUniqueId(&id));
  } catch (...) {
    local_failure = std::current_exception();
  }

  int32_t ok = local_failure ? 0 : 1;
  try {
    bootstrap.all_reduce(&ok, 1, DType::i32, ReduceOp::min);
  } catch (...) {
    release_cuda_resources();
    throw;
  }
  if (ok == 0) {
    release_cuda_resources();
    if (local_failure) std::rethrow_exception(local_failure);
    fail_check("NCCL", "NcclCommunicator(bootstrap, device)",
               "another rank failed to prepare its GPU (its own error says why); " +
                   where(rank_, world_size_, device_),
               __func__, __FILE__, __LINE__);
  }

  ncclComm_t comm = nullptr;
  try {
    bootstrap.broadcast(&id, sizeof(id), DType::u8, 0);
    DPT_CHECK_NCCL(nullptr, ncclCommInitRank(&comm, world_size_, id, rank_));
  } catch (...) {
    release_cuda_resources();
    throw;
  }
  comm_ = comm;
  state_ = State::live;
}

NcclCommunicator::NcclCommunicator(NcclCommunicator&& other) noexcept
    : Communicator(),
      comm_(std::exchange(other.comm_, nullptr)),
      stream_(std::exchange(other.stream_, nullptr)),
      scratch_(std::exchange(other.scratch_, nullptr)),
      rank_(other.rank_),
      world_size_(other.world_size_),
      device_(other.device_),
      timeout_s_(other.timeout_s_),
      state_(std::exchange(other.state_, State::moved_from)) {}

NcclCommunicator::~NcclCommunicator() {
  if (state_ != State::live) return;
  std::fprintf(stderr,
               "dpt warning: NcclCommunicator (%s) destroyed without destroy() or abort(); its "
               "NCCL communicator and stream are left to process exit\n",
               where(rank_, world_size_, device_).c_str());
}

std::string NcclCommunicator::backend() const {
  return "nccl " + nccl_version();
}

void NcclCommunicator::require_live(const char* what) const {
  if (state_ == State::live) return;
  const char* why = state_ == State::aborted     ? "was aborted (an earlier error or abort())"
                    : state_ == State::destroyed ? "was destroyed"
                                                 : "was moved from";
  fail_check(
      "check", what,
      std::string("the NCCL communicator ") + why + "; " + where(rank_, world_size_, device_),
      __func__, __FILE__, __LINE__);
}

void NcclCommunicator::release_cuda_resources() noexcept {
  // Only on paths where the comm stream holds no NCCL work that could still be running: cudaFree
  // may wait for the device, and cudaStreamDestroy defers until the stream drains anyway.
  if (scratch_ != nullptr && cudaFree(scratch_) != cudaSuccess) {
    std::fprintf(stderr, "dpt warning: cudaFree of the NCCL scratch failed: %s\n",
                 cudaGetErrorString(cudaGetLastError()));
  }
  scratch_ = nullptr;
  if (stream_ != nullptr && cudaStreamDestroy(stream_) != cudaSuccess) {
    std::fprintf(stderr, "dpt warning: cudaStreamDestroy of the NCCL stream failed: %s\n",
                 cudaGetErrorString(cudaGetLastError()));
  }
  stream_ = nullptr;
}

void NcclCommunicator::abort_and_fail(const char* kind, const char* call, const std::string& detail,
                                      const char* func, const char* file, int line) {
  abort(std::string(call) + ": " + detail);
  fail_check(kind, call,
             detail + "; communicator aborted (" + where(rank_, world_size_, device_) + ")", func,
             file, line);
}

void NcclCommunicator::wait_event(CUevent_st* ready) {
  require_live("wait_event");
  DPT_CHECK(ready != nullptr, "wait_event got a null event");
  DPT_CHECK_CUDA(cudaStreamWaitEvent(stream_, ready, 0));
}

void NcclCommunicator::record_event(CUevent_st* done) {
  require_live("record_event");
  DPT_CHECK(done != nullptr, "record_event got a null event");
  DPT_CHECK_CUDA(cudaEventRecord(done, stream_));
}

void NcclCommunicator::all_reduce(void* buf, size_t count, DType dtype, ReduceOp op) {
  require_live("all_reduce");
  check_avg("all_reduce", dtype, op);
  check_buffer(buf, count, "all_reduce");
  if (count == 0) return;
  count_sent(ring_all_reduce_bytes(count * dtype_size(dtype), world_size_));  // [Bytes sent]
  DPT_NCCL_OR_ABORT(ncclAllReduce(buf, buf, count, nccl_dtype(dtype), nccl_op(op), comm_, stream_));
}

void NcclCommunicator::broadcast(void* buf, size_t count, DType dtype, int root) {
  require_live("broadcast");
  DPT_CHECK(root >= 0 && root < world_size_, "broadcast root " + std::to_string(root) +
                                                 " is outside the world of " +
                                                 std::to_string(world_size_) + " ranks");
  check_buffer(buf, count, "broadcast");
  if (count == 0) return;
  if (rank_ == root && world_size_ > 1) count_sent(count * dtype_size(dtype));
  DPT_NCCL_OR_ABORT(ncclBroadcast(buf, buf, count, nccl_dtype(dtype), root, comm_, stream_));
}

void NcclCommunicator::all_gather(const void* send, void* recv, size_t count, DType dtype) {
  require_live("all_gather");
  check_buffer(send, count, "all_gather (send)");
  check_buffer(recv, count, "all_gather (recv)");
  if (count == 0) return;
  count_sent(count * dtype_size(dtype) * static_cast<uint64_t>(world_size_ - 1));
  DPT_NCCL_OR_ABORT(ncclAllGather(send, recv, count, nccl_dtype(dtype), comm_, stream_));
}

void NcclCommunicator::barrier() {
  require_live("barrier");
  // The value is irrelevant: completing the all-reduce means every rank has enqueued it.
  DPT_NCCL_OR_ABORT(ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_));
  synchronize();
}

bool NcclCommunicator::poll() {
  require_live("poll");
  const cudaError_t q = cudaStreamQuery(stream_);
  if (q != cudaSuccess && q != cudaErrorNotReady) {
    abort_and_fail("CUDA", "cudaStreamQuery(comm stream)", cudaGetErrorString(q), __func__,
                   __FILE__, __LINE__);
  }
  // Asked even once the stream is done: an error NCCL's proxy thread saw (a network failure,
  // a peer that closed its connection) is reported here, not by the stream.
  ncclResult_t async = ncclSuccess;
  DPT_NCCL_OR_ABORT(ncclCommGetAsyncError(comm_, &async));
  if (async != ncclSuccess && async != ncclInProgress) {
    abort_and_fail("NCCL", "ncclCommGetAsyncError", nccl_error_text(async, comm_), __func__,
                   __FILE__, __LINE__);
  }
  return q == cudaSuccess;
}

void NcclCommunicator::synchronize() {
  require_live("synchronize");
  const auto start = std::chrono::steady_clock::now();
  const auto limit = std::chrono::duration<double>(timeout_s_);
  auto pause = kFirstPoll;
  for (;;) {
    if (poll()) return;
    if (std::chrono::steady_clock::now() - start > limit) {
      // [Hang diagnosis]: with the collective watchdog running, the report of every rank's
      // state and the end of the job, after the communicator stops its kernels.
      abort("the NCCL watchdog timed out");
      report_backend_hang("the NCCL stream did not finish within " + std::to_string(timeout_s_) +
                          " s (--collective-timeout)");
      abort_and_fail("NCCL", "synchronize (watchdog)",
                     "the communication stream did not finish within " +
                         std::to_string(timeout_s_) +
                         " s (DPT_NCCL_TIMEOUT_S): a peer rank may have died or hung, or the "
                         "ranks called collectives in different orders",
                     __func__, __FILE__, __LINE__);
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, kPollInterval);
  }
}

namespace {
// A request on the comm stream completes when everything enqueued there so far has: a superset
// of the one collective, which keeps the hot path free of events ([Sync Streams]). GPU code
// orders the compute stream by events instead and never needs to wait on a Request.
class CommStreamWork final : public PendingCollective {
 public:
  explicit CommStreamWork(NcclCommunicator& c) : c_(c) {}
  bool test() override { return c_.poll(); }
  void wait() override { c_.synchronize(); }

 private:
  NcclCommunicator& c_;
};
}  // namespace

Request NcclCommunicator::iall_reduce(void* buf, size_t count, DType dtype, ReduceOp op) {
  all_reduce(buf, count, dtype, op);
  return Request(std::make_unique<CommStreamWork>(*this));
}

// Shards of unequal size ([Shards]) have no NCCL collective of their own: a group of one
// ncclReduce (or ncclBroadcast) per owner moves the same bytes; equal shards take
// ncclReduceScatter / ncclAllGather.
namespace {

// The total of the caller's [Shards], checked: one entry per rank.
size_t shard_total(const char* what, std::span<const size_t> counts, int world) {
  DPT_CHECK(counts.size() == static_cast<size_t>(world),
            std::string(what) + " got " + std::to_string(counts.size()) +
                " shard counts for a world of " + std::to_string(world));
  size_t total = 0;
  for (size_t c : counts)
    total += c;
  return total;
}

bool all_equal(std::span<const size_t> counts) {
  for (size_t c : counts)
    if (c != counts[0]) return false;
  return true;
}

}  // namespace

// Equal shards go through NCCL's own reduce-scatter and all-gather; unequal ones (any count,
// or buckets that meet only some ranks' owned ranges) as one group of a reduce to, or a
// broadcast from, each rank with a non-empty shard: the same bytes on the wire as a ring
// reduce-scatter, in one launch.
void NcclCommunicator::reduce_scatter_v(const void* send, void* recv,
                                        std::span<const size_t> counts, DType dtype, ReduceOp op) {
  require_live("reduce_scatter");
  check_avg("reduce_scatter", dtype, op);
  const size_t count = shard_total("reduce_scatter", counts, world_size_);
  const size_t mine = counts[static_cast<size_t>(rank_)];
  check_buffer(send, count, "reduce_scatter (send)");
  check_buffer(recv, mine, "reduce_scatter (recv)");
  if (count == 0) return;
  const size_t elem = dtype_size(dtype);
  const char* base = static_cast<const char*>(send);
  count_sent((count - mine) * elem);  // [Bytes sent]: a ring's (W-1)/W of equal shards
  if (all_equal(counts)) {
    DPT_NCCL_OR_ABORT(
        ncclReduceScatter(send, recv, mine, nccl_dtype(dtype), nccl_op(op), comm_, stream_));
  } else {
    DPT_NCCL_OR_ABORT(ncclGroupStart());
    size_t offset = 0;
    for (int r = 0; r < world_size_; ++r) {
      const size_t n = counts[static_cast<size_t>(r)];
      if (n > 0)
        DPT_NCCL_OR_ABORT(ncclReduce(base + offset * elem, r == rank_ ? recv : nullptr, n,
                                     nccl_dtype(dtype), nccl_op(op), r, comm_, stream_));
      offset += n;
    }
    DPT_NCCL_OR_ABORT(ncclGroupEnd());
  }
}

void NcclCommunicator::all_gather_v(const void* send, void* recv, std::span<const size_t> counts,
                                    DType dtype) {
  require_live("all_gather");
  const size_t count = shard_total("all_gather", counts, world_size_);
  const size_t mine = counts[static_cast<size_t>(rank_)];
  check_buffer(send, mine, "all_gather (send)");
  check_buffer(recv, count, "all_gather (recv)");
  if (count == 0) return;
  const size_t elem = dtype_size(dtype);
  char* base = static_cast<char*>(recv);
  count_sent(mine * elem * static_cast<uint64_t>(world_size_ - 1));  // [Bytes sent]
  if (all_equal(counts)) {
    DPT_NCCL_OR_ABORT(ncclAllGather(send, recv, mine, nccl_dtype(dtype), comm_, stream_));
  } else {
    DPT_NCCL_OR_ABORT(ncclGroupStart());
    size_t offset = 0;
    for (int r = 0; r < world_size_; ++r) {
      const size_t n = counts[static_cast<size_t>(r)];
      if (n > 0)
        DPT_NCCL_OR_ABORT(ncclBroadcast(r == rank_ ? send : nullptr, base + offset * elem, n,
                                        nccl_dtype(dtype), r, comm_, stream_));
      offset += n;
    }
    DPT_NCCL_OR_ABORT(ncclGroupEnd());
  }
}

Request NcclCommunicator::ireduce_scatter_v(const void* send, void* recv,
                                            std::span<const size_t> counts, DType dtype,
                                            ReduceOp op) {
  reduce_scatter_v(send, recv, counts, dtype, op);
  return Request(std::make_unique<CommStreamWork>(*this));
}

Request NcclCommunicator::iall_gather_v(const void* send, void* recv,
                                        std::span<const size_t> counts, DType dtype) {
  all_gather_v(send, recv, counts, dtype);
  return Request(std::make_unique<CommStreamWork>(*this));
}

void NcclCommunicator::destroy() {
  if (state_ == State::destroyed || state_ == State::aborted) return;
  require_live("destroy");
  synchronize();  // aborts and throws rather than letting finalize wait on a dead peer
  DPT_NCCL_OR_ABORT(ncclCommFinalize(comm_));
  DPT_NCCL_OR_ABORT(ncclCommDestroy(comm_));
  comm_ = nullptr;
  state_ = State::destroyed;
  release_cuda_resources();
}

void NcclCommunicator::abort(const std::string& reason) noexcept {
  if (state_ != State::live) return;
  std::fprintf(stderr, "dpt warning: aborting the NCCL communicator (%s): %s\n",
               where(rank_, world_size_, device_).c_str(), reason.c_str());
  const ncclResult_t rc = ncclCommAbort(comm_);
  if (rc != ncclSuccess) {
    std::fprintf(stderr, "dpt warning: ncclCommAbort failed: %s\n", ncclGetErrorString(rc));
  }
  comm_ = nullptr;
  state_ = State::aborted;
  // The stream is destroyed (CUDA defers that until queued work drains); the 4-byte scratch is
  // left to process exit, since cudaFree may wait for a device that a stuck kernel still holds.
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  stream_ = nullptr;
  scratch_ = nullptr;
}

}  // namespace dpt::comm
