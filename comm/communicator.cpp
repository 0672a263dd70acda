// Names and sizes of the communicator's dtypes and reduce operations, shared by every backend.
#include "comm/communicator.h"

#include <cstdio>
#include <exception>
#include <string>

#include "common/errors.h"

namespace dpt::comm {

Shard shard_of(size_t count, int world, int rank) {
  DPT_CHECK(
      world >= 1 && rank >= 0 && rank < world,
      "shard_of: rank " + std::to_string(rank) + " outside a world of " + std::to_string(world));
  const size_t w = static_cast<size_t>(world), r = static_cast<size_t>(rank);
  const size_t base = count / w, extra = count % w;
  return Shard{r * base + (r < extra ? r : extra), base + (r < extra ? 1 : 0)};
}

std::vector<size_t> shard_counts(size_t count, int world) {
  std::vector<size_t> counts(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r)
    counts[static_cast<size_t>(r)] = shard_of(count, world, r).count;
  return counts;
}

Request Communicator::ireduce_scatter(const void* send, void* recv, size_t count, DType dtype,
                                      ReduceOp op) {
  const std::vector<size_t> counts = shard_counts(count, world_size());
  return ireduce_scatter_v(send, recv, counts, dtype, op);
}

Request Communicator::iall_gather_shards(const void* send, void* recv, size_t count, DType dtype) {
  const std::vector<size_t> counts = shard_counts(count, world_size());
  return iall_gather_v(send, recv, counts, dtype);
}

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    finish_quietly();
    op_ = std::move(other.op_);
  }
  return *this;
}

Request::~Request() {
  finish_quietly();
}

// A failure ends the collective: the handle lets go of it before the exception leaves, so the
// destructor does not wait on it a second time.
bool Request::test() {
  if (!op_) return true;
  bool complete = false;
  try {
    complete = op_->test();
  } catch (...) {
    op_.reset();
    throw;
  }
  if (complete) op_.reset();
  return complete;
}

void Request::wait() {
  if (!op_) return;
  const std::unique_ptr<PendingCollective> op = std::move(op_);
  op->wait();
}

void Request::finish_quietly() noexcept {
  if (!op_) return;
  try {
    op_->wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpt warning: a collective dropped in flight failed: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "dpt warning: a collective dropped in flight failed\n");
  }
  op_.reset();
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return sizeof(float);
    case DType::f64:
      return sizeof(double);
    case DType::i32:
      return sizeof(int32_t);
    case DType::i64:
      return sizeof(int64_t);
    case DType::u64:
      return sizeof(uint64_t);
    case DType::u8:
      return sizeof(uint8_t);
  }
  // Only reachable through a cast of an out-of-range integer; a wrong size would corrupt memory.
  fail_check("check", "dtype_size(t)", "unknown DType " + std::to_string(static_cast<int>(t)),
             __func__, __FILE__, __LINE__);
}

// The name functions feed error messages, so an unknown value yields text rather than a throw.
const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
    case DType::u64:
      return "u64";
    case DType::u8:
      return "u8";
  }
  return "unknown-dtype";
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return "sum";
    case ReduceOp::avg:
      return "avg";
    case ReduceOp::max:
      return "max";
    case ReduceOp::min:
      return "min";
  }
  return "unknown-op";
}

}  // namespace dpt::comm
