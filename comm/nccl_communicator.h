// The NCCL backend of the communicator interface: collectives over device buffers, enqueued on
// a dedicated communication stream that the caller orders against its compute stream by events.
#pragma once

#include <string>

#include "comm/communicator.h"

// The CUDA runtime's handle types without the CUDA headers: cudaStream_t is CUstream_st* and
// cudaEvent_t is CUevent_st*, so callers pass theirs unchanged.
struct CUstream_st;
struct CUevent_st;
// NCCL's communicator handle (ncclComm_t), likewise without nccl.h.
struct ncclComm;

namespace dpt::comm {

// [Sync Streams]
// The communicator owns one non-blocking CUDA stream, the comm stream (stream()). all_reduce,
// broadcast and all_gather enqueue their work there and return at once: the host never waits
// for the GPU inside them. Nothing orders the comm stream against the caller's compute stream
// except the events the caller hands over:
//   1. compute stream writes the buffer (e.g. the last backward kernel of a bucket);
//   2. cudaEventRecord(ready, compute);  comm.wait_event(ready);
//        -> the comm stream will not start the next collective before `ready` fires;
//   3. comm.all_reduce(grads, n, DType::f32, ReduceOp::avg);     (returns immediately)
//   4. comm.record_event(done);  cudaStreamWaitEvent(compute, done);
//        -> kernels enqueued on compute after this wait see the reduced values.
// Until the compute stream has waited for `done`, no stream may write the buffer (the collective
// may still read it) and it must not be freed. Destroying `ready` or `done` after handing them
// over is safe (CUDA defers it); re-recording them before the waits are enqueued is not.
// Several collectives may be enqueued between one wait_event and one record_event; they run in
// call order. Events are the caller's: this class creates none on the hot path.
//
// The host waits only in synchronize() and barrier(), and neither waits forever ([Watchdog]).
//
// [Watchdog]
// A peer rank that dies leaves NCCL kernels on the surviving ranks spinning; a plain
// cudaStreamSynchronize would hang that rank until the job's wall-clock limit. synchronize()
// instead polls the comm stream and NCCL's asynchronous error state (pauses doubling from 20 us
// to 1 ms).
// On an asynchronous NCCL error, a CUDA error, or after `timeout_s` without completion, it
// aborts the communicator (ncclCommAbort, which also stops the spinning kernels) and throws
// RuntimeFailure naming the cause, this rank and its host. After that the communicator is
// aborted: every further call throws, and only destruction remains. Limits: the constructor's
// ncclCommInitRank and NCCL's host-side connection set-up at a collective's first use of a path
// wait inside NCCL (the communicator is a blocking one), so a peer that dies exactly then is
// caught by the job's time limit rather than here.
//
// Collective semantics beyond the [Collective contract] (comm/communicator.h):
// - Buffers are device pointers on this communicator's device; in-place all_reduce and broadcast.
// - avg is NCCL's ncclAvg, for f32 and f64 only (checked before any traffic, as the MPI backend
//   does). For floating types NCCL scales each input by 1/world_size before summing, so the last
//   bits can differ from the MPI backend's sum-then-scale; for a power-of-two world size both are
//   exact scalings and agree wherever the sums do.
// - Float sums follow NCCL's reduction order (ring or tree, chosen by size), which need not be
//   rank order: with three or more ranks the result can differ from a rank-order sum in the
//   last bits. Every rank receives the same bits.
// - count == 0 enqueues nothing.
class NcclCommunicator final : public Communicator {
 public:
  // DPT_NCCL_TIMEOUT_S from the environment (seconds, > 0), else 600. A malformed value throws
  // UsageError naming the variable.
  static double timeout_from_env();

  // Collective over `bootstrap` (a host-buffer backend such as MpiCommunicator, whose every rank
  // calls this together): makes `cuda_device` current on the calling thread (it stays current),
  // creates the comm stream (non-blocking, highest priority, so collectives are scheduled ahead of
  // compute kernels), has rank 0 create the NCCL unique id and broadcast it over `bootstrap`, then
  // ncclCommInitRank(bootstrap.rank(), bootstrap.world_size()). Local failures (bad device,
  // no memory) are agreed over `bootstrap` before NCCL starts, so every rank throws instead of
  // some waiting in ncclCommInitRank. Two ranks must not share a device (NCCL refuses it).
  // `timeout_s` bounds every host wait ([Watchdog]). `bootstrap` is used only here.
  NcclCommunicator(Communicator& bootstrap, int cuda_device, double timeout_s = timeout_from_env());
  // Warns on stderr when neither destroy() nor abort() ran; never calls NCCL or CUDA (c10d: NCCL
  // calls from destructors crash at driver shutdown), so such a communicator leaks until exit.
  ~NcclCommunicator() override;

  NcclCommunicator(NcclCommunicator&& other) noexcept;
  NcclCommunicator& operator=(NcclCommunicator&&) = delete;

  using Communicator::all_gather;
  using Communicator::all_reduce;
  using Communicator::broadcast;
  using Communicator::iall_reduce;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  int device() const { return device_; }
  double timeout_s() const { return timeout_s_; }
  // "nccl 2.28.3"
  std::string backend() const override;

  // The comm stream, a cudaStream_t ([Sync Streams]); null after destroy() or abort().
  CUstream_st* stream() const { return stream_; }

  // [Sync Streams]: the comm stream waits for `ready` (cudaStreamWaitEvent) before the work
  // enqueued after this call. Never blocks the host.
  void wait_event(CUevent_st* ready);
  // [Sync Streams]: records `done` on the comm stream after all work enqueued so far.
  void record_event(CUevent_st* done);

  // Enqueue on the comm stream and return without waiting ([Sync Streams]).
  void all_reduce(void* buf, size_t count, DType dtype, ReduceOp op) override;
  void broadcast(void* buf, size_t count, DType dtype, int root) override;
  void all_gather(const void* send, void* recv, size_t count, DType dtype) override;
  // Reduce-scatter and all-gather of caller-chosen [Shards] (any counts, zeros allowed),
  // enqueued likewise with no Request: in place when recv (reduce-scatter) or send (all-gather)
  // is this rank's shard inside the full buffer. [ZeRO] on the GPU orders them by events.
  void reduce_scatter_v(const void* send, void* recv, std::span<const size_t> counts, DType dtype,
                        ReduceOp op);
  void all_gather_v(const void* send, void* recv, std::span<const size_t> counts, DType dtype);
  // Enqueued as the blocking forms are; the Request completes when the comm stream has drained
  // (wait() is synchronize()). reduce-scatter and all-gather of [Shards], any count.
  Request iall_reduce(void* buf, size_t count, DType dtype, ReduceOp op) override;
  Request ireduce_scatter_v(const void* send, void* recv, std::span<const size_t> counts,
                            DType dtype, ReduceOp op) override;
  Request iall_gather_v(const void* send, void* recv, std::span<const size_t> counts,
                        DType dtype) override;
  // Every rank has reached this call: a one-element all-reduce, then synchronize(). Blocks the
  // host ([Watchdog] bounds it).
  void barrier() override;

  // Blocks the host until all work enqueued on the comm stream so far has finished, bounded as
  // [Watchdog] says; throws RuntimeFailure (after aborting the communicator) on an NCCL or CUDA
  // error or on timeout.
  void synchronize();
  // One look without blocking: true when the comm stream has drained. Errors as synchronize().
  bool poll();

  // Collective: waits for outstanding work (synchronize()), then ncclCommFinalize and
  // ncclCommDestroy, and frees the stream and scratch. On failure it aborts and rethrows.
  void destroy();
  // Local (not collective): ncclCommAbort, which stops this rank's outstanding NCCL work without
  // waiting for peers, then frees the stream and scratch. Prints `reason` to stderr. For error
  // paths; never throws. A no-op after destroy() or abort().
  void abort(const std::string& reason) noexcept;

  bool aborted() const { return state_ == State::aborted; }

 private:
  enum class State { live, destroyed, aborted, moved_from };

  void require_live(const char* what) const;
  void release_cuda_resources() noexcept;
  // abort(), then fail_check(kind, call, detail, ...): the one way out of a failed live call.
  [[noreturn]] void abort_and_fail(const char* kind, const char* call, const std::string& detail,
                                   const char* func, const char* file, int line);

  ncclComm* comm_ = nullptr;
  CUstream_st* stream_ = nullptr;
  float* scratch_ = nullptr;  // one device float for barrier()
  int rank_ = 0;
  int world_size_ = 1;
  int device_ = -1;
  double timeout_s_ = 600;
  State state_ = State::moved_from;
};

}  // namespace dpt::comm
