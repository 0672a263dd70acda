// The MPI backend of the communicator interface, over a duplicate of a given MPI communicator
// (MPI_COMM_WORLD for training; MPI_COMM_SELF gives a one-rank communicator in tests).
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.h"

namespace dpt::comm {

namespace detail {

// [Scratch reuse] Host scratch of the requests in flight, kept from call to call. A buffer
// allocated and freed per call costs a page fault per page on every call once it is large
// (glibc maps blocks of 32 MiB and more afresh each time, and returns them on free; in a virtual
// machine each fault is dear): measured with bench-collectives, a 32 MiB all-reduce on 2 ranks
// took 40 times longer than a 16 MiB one. Shared by the communicator and its requests, so a
// request may outlive neither its buffer nor the pool.
class ScratchPool {
 public:
  struct Block {
    std::unique_ptr<char[]> data;
    size_t bytes = 0;
  };
  // A block of at least `bytes`: the smallest free one that fits, else a new one (replacing the
  // largest free one, so the pool holds no more blocks than were ever in use at once).
  Block take(size_t bytes);
  void give(Block block);

 private:
  std::vector<Block> free_;
};

}  // namespace detail

class MpiCommunicator final : public Communicator {
 public:
  // Collective over `base`: duplicates it so our traffic never matches a user's messages.
  explicit MpiCommunicator(MPI_Comm base);
  // Frees the duplicate; must run before MPI is finalized. Never throws.
  ~MpiCommunicator() override;

  // The typed span overloads of Communicator would otherwise be hidden by the overrides below.
  using Communicator::all_gather;
  using Communicator::all_reduce;
  using Communicator::broadcast;
  using Communicator::iall_reduce;

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce(void* buf, size_t count, DType dtype, ReduceOp op) override;
  void broadcast(void* buf, size_t count, DType dtype, int root) override;
  void all_gather(const void* send, void* recv, size_t count, DType dtype) override;
  void barrier() override;
  // [Rank-order sum] for f32/f64 sum and avg; MPI_Iallreduce for the rest. Progress only inside
  // test()/wait() ([MPI progress]).
  Request iall_reduce(void* buf, size_t count, DType dtype, ReduceOp op) override;
  // f32/f64 sum and avg only ([Rank-order sum]), at most INT_MAX elements in all.
  Request ireduce_scatter_v(const void* send, void* recv, std::span<const size_t> counts,
                            DType dtype, ReduceOp op) override;
  Request iall_gather_v(const void* send, void* recv, std::span<const size_t> counts,
                        DType dtype) override;

 private:
  // The first of the two point-to-point tags of the next request ([In-flight order]).
  int next_tag();

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::shared_ptr<detail::ScratchPool> scratch_ = std::make_shared<detail::ScratchPool>();
  uint64_t issued_ = 0;     // requests issued, the same count on every rank
  uint64_t tag_pairs_ = 1;  // MPI_TAG_UB / 2
};

namespace detail {

// The in-place all-reduce behind MpiCommunicator::all_reduce and iall_reduce, with the chunk size
// as a parameter so tests can push a small buffer through several chunks ([MPI count limit],
// comm/chunking.h). `world_size` is comm's size, used for avg.
void mpi_all_reduce_chunked(MPI_Comm comm, int world_size, void* buf, size_t count, DType dtype,
                            ReduceOp op, size_t max_chunk_elements);

}  // namespace detail

}  // namespace dpt::comm
