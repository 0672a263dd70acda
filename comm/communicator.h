// The communicator interface: collectives over flat buffers, independent of the backend.
// The MPI backend serves the CPU path; the NCCL backend (CUDA issue) implements the same calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace dpt::comm {

enum class DType { f32, f64, i32, i64, u64, u8 };
enum class ReduceOp { sum, avg, max, min };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* reduce_op_name(ReduceOp op);

template <typename T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return DType::f32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::f64;
  else if constexpr (std::is_same_v<T, int32_t>)
    return DType::i32;
  else if constexpr (std::is_same_v<T, int64_t>)
    return DType::i64;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return DType::u64;
  else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, char>)
    return DType::u8;
  else
    static_assert(sizeof(T) == 0, "no communicator dtype for this type");
}

// [Shards] `count` elements over `world` ranks: contiguous ranges in rank order, balanced to
// within one element (the first count % world ranks hold one more). Reduce-scatter leaves rank r
// its shard; all-gather of shards assembles them. Any count, any world size, shards may be empty.
struct Shard {
  size_t offset = 0;
  size_t count = 0;
};
Shard shard_of(size_t count, int world, int rank);
// Every rank's shard_of(count, ...) count, in rank order.
std::vector<size_t> shard_counts(size_t count, int world);

// A backend's collective in flight. test() advances it without blocking and says whether it has
// completed; wait() blocks until it has. Both may throw RuntimeFailure; both are no-ops once
// complete.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual bool test() = 0;
  virtual void wait() = 0;
};

// The handle of a non-blocking collective (iall_reduce, ireduce_scatter, iall_gather_shards).
// An empty Request is complete. Destroying one in flight waits for it first (its buffers may
// still be in use by the network), printing rather than throwing a failure.
class Request {
 public:
  Request() = default;
  explicit Request(std::unique_ptr<PendingCollective> op) : op_(std::move(op)) {}
  Request(Request&&) noexcept = default;
  Request& operator=(Request&& other) noexcept;
  ~Request();

  // True once complete; the results are in place then. Advances the collective.
  bool test();
  void wait();
  bool done() const { return op_ == nullptr; }

 private:
  void finish_quietly() noexcept;
  std::unique_ptr<PendingCollective> op_;
};

// [Collective contract]
// - Every rank of the communicator calls the same collectives in the same order with the same
//   counts and dtypes; otherwise the job hangs or fails. Callers keep this order fixed.
// - Buffers are host pointers for the MPI backend (device pointers for NCCL).
// - avg is defined for floating types only: sum, then multiply by 1/world_size.
// - Integer sums must not overflow: Open MPI 4.1's vectorized u8 sum saturates instead of
//   wrapping (open-mpi/ompi#8045), so the result of an overflowing sum depends on the backend.
// - A failing call throws RuntimeFailure naming the call, rank and host.
// - In flight (the i* calls): every rank issues the same non-blocking collectives in the same
//   order, interleaved with blocking ones in the same order too; a rank may complete them in any
//   order. Between issue and completion nothing reads or writes the operation's buffers (send
//   buffers included) and nothing frees them. Requests are completed on the thread that issued
//   them.
class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend() const = 0;

  // In place: buf[i] = op over ranks of buf[i].
  virtual void all_reduce(void* buf, size_t count, DType dtype, ReduceOp op) = 0;
  // buf on every rank becomes root's buf.
  virtual void broadcast(void* buf, size_t count, DType dtype, int root) = 0;
  // recv[r*count .. (r+1)*count) = send of rank r; recv has world_size*count elements.
  virtual void all_gather(const void* send, void* recv, size_t count, DType dtype) = 0;
  virtual void barrier() = 0;

  // Non-blocking forms ([Collective contract], in flight). iall_reduce: as all_reduce.
  virtual Request iall_reduce(void* buf, size_t count, DType dtype, ReduceOp op) = 0;
  // [Shards] chosen by the caller: rank r's shard is counts[r] elements starting at
  // counts[0] + ... + counts[r-1] (counts: world_size entries, the same on every rank; zeros
  // allowed). send: the sum of counts elements on every rank; recv: this rank's counts[rank]
  // elements of the reduction (recv may be send + this rank's offset).
  virtual Request ireduce_scatter_v(const void* send, void* recv, std::span<const size_t> counts,
                                    DType dtype, ReduceOp op) = 0;
  // send: this rank's counts[rank] elements (it may be recv + this rank's offset); recv: the
  // sum of counts elements, every rank's shard in place.
  virtual Request iall_gather_v(const void* send, void* recv, std::span<const size_t> counts,
                                DType dtype) = 0;

  // The same over shard_of(count, ...): send: `count` elements on every rank; recv: this rank's
  // shard of the reduction (recv may be send + that shard's offset).
  Request ireduce_scatter(const void* send, void* recv, size_t count, DType dtype, ReduceOp op);
  // send: this rank's shard_of(count, ...) (it may be recv + that shard's offset); recv: all
  // `count` elements, every rank's shard in place.
  Request iall_gather_shards(const void* send, void* recv, size_t count, DType dtype);

  void reduce_scatter(const void* send, void* recv, size_t count, DType dtype, ReduceOp op) {
    ireduce_scatter(send, recv, count, dtype, op).wait();
  }
  void all_gather_shards(const void* send, void* recv, size_t count, DType dtype) {
    iall_gather_shards(send, recv, count, dtype).wait();
  }

  template <typename T>
  void all_reduce(std::span<T> buf, ReduceOp op) {
    all_reduce(buf.data(), buf.size(), dtype_of<T>(), op);
  }
  template <typename T>
  void broadcast(std::span<T> buf, int root) {
    broadcast(buf.data(), buf.size(), dtype_of<T>(), root);
  }
  template <typename T>
  Request iall_reduce(std::span<T> buf, ReduceOp op) {
    return iall_reduce(buf.data(), buf.size(), dtype_of<T>(), op);
  }
  template <typename T>
  void all_gather(std::span<const T> send, std::span<T> recv) {
    all_gather(send.data(), recv.data(), send.size(), dtype_of<T>());
  }

  // [Bytes sent] The bytes this rank has handed to other ranks through this communicator since
  // it was made: what its algorithm sends where the backend chooses it (the [Rank-order sum]'s
  // point-to-point messages), a ring's share where the library does (all-reduce 2(W-1)/W of
  // the buffer, reduce-scatter (W-1)/W, all-gather its shard to W-1 ranks, broadcast the
  // buffer once from the root). Counted at issue. For the step metrics and benchmarks.
  uint64_t bytes_sent() const { return bytes_sent_; }

 protected:
  void count_sent(uint64_t bytes) { bytes_sent_ += bytes; }
  // A ring all-reduce's share of `bytes` on `world` ranks.
  static uint64_t ring_all_reduce_bytes(uint64_t bytes, int world) {
    return world > 1 ? 2 * bytes * static_cast<uint64_t>(world - 1) / static_cast<uint64_t>(world)
                     : 0;
  }

 private:
  uint64_t bytes_sent_ = 0;
};

}  // namespace dpt::comm
