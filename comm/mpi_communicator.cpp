// The MPI backend of the communicator: host buffers, blocking and non-blocking collectives on a
// private duplicate of the caller's communicator, every call checked through DPT_CHECK_MPI.
#include "comm/mpi_communicator.h"

#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "comm/chunking.h"
#include "comm/mpi_session.h"
#include "common/errors.h"

namespace dpt::comm {
namespace {

MPI_Datatype mpi_dtype(DType t) {
  switch (t) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::i32:
      return MPI_INT32_T;
    case DType::i64:
      return MPI_INT64_T;
    case DType::u64:
      return MPI_UINT64_T;
    case DType::u8:
      return MPI_UINT8_T;
  }
  fail_check("check", "mpi_dtype(t)", "unknown DType " + std::to_string(static_cast<int>(t)),
             __func__, __FILE__, __LINE__);
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return MPI_SUM;
    case ReduceOp::avg:
      return MPI_SUM;  // unused: avg is a [Rank-order sum] with its own scaling
    case ReduceOp::max:
      return MPI_MAX;
    case ReduceOp::min:
      return MPI_MIN;
  }
  fail_check("check", "mpi_op(op)", "unknown ReduceOp " + std::to_string(static_cast<int>(op)),
             __func__, __FILE__, __LINE__);
}

// Element offsets become byte offsets here and nowhere else.
char* element_at(void* buf, size_t offset, DType dtype) {
  return static_cast<char*>(buf) + offset * dtype_size(dtype);
}

void check_buffer(const void* buf, size_t count, const char* what) {
  DPT_CHECK(buf != nullptr || count == 0,
            std::string(what) + " got a null buffer for " + std::to_string(count) + " elements");
}

// --- collectives in flight --------------------------------------------------------------------

// [MPI progress] Open MPI advances a non-blocking operation only inside MPI calls on the issuing
// thread (MPI_THREAD_FUNNELED, no asynchronous progress thread by default). Callers keep it
// moving with Request::test() at points they pass often (the trainer: every block boundary of
// backward, trainer/gradient_exchange.h); a wait() finishes it. A communication thread that owns
// every MPI call would progress without the caller's help, but every collective of the run
// (the step's votes, validation, checkpoints) would then have to be funnelled through it; tests
// at block boundaries cost a few MPI_Testall calls per step and keep one thread in MPI.
//
// [In-flight order] MPI matches collectives on a communicator by the order in which ranks issue
// them. A multi-stage operation must therefore not issue its later stages as collectives: when
// a stage finishes depends on timing, so two ranks would issue the second stage of one request
// and the first of another in different orders, and the job would hang or mix buffers. So every
// collective (MPI_I*) is issued when the request is made, which is the same order on every rank
// ([Collective contract]); later stages use point-to-point messages, which MPI matches by
// (source, tag) whatever the order. Each request takes its tags from a counter that advances in
// issue order, identical on every rank.
//
// A request of several MPI requests per stage: when all of a stage's have completed,
// next_stage() posts the next stage's point-to-point messages (returning true) or ends (false).
// The MPI argument arrays live in the object, since MPI reads them until a request completes.
class MpiStages : public PendingCollective {
 public:
  bool test() override {
    while (!finished_) {
      int flag = 1;
      if (!reqs_.empty())
        DPT_CHECK_MPI(
            MPI_Testall(static_cast<int>(reqs_.size()), reqs_.data(), &flag, MPI_STATUSES_IGNORE));
      if (!flag) return false;
      reqs_.clear();
      finished_ = !next_stage();
    }
    return true;
  }
  void wait() override {
    while (!finished_) {
      if (!reqs_.empty())
        DPT_CHECK_MPI(
            MPI_Waitall(static_cast<int>(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE));
      reqs_.clear();
      finished_ = !next_stage();
    }
  }

 protected:
  virtual bool next_stage() { return false; }
  MPI_Request& add() { return reqs_.emplace_back(MPI_REQUEST_NULL); }
  std::vector<MPI_Request> reqs_;

 private:
  bool finished_ = false;
};

// Every rank's [Shards] of `count` elements as MPI's counts and displacements (count <= INT_MAX).
void shard_layout(size_t count, int world, std::vector<int>& counts, std::vector<int>& displs) {
  for (int r = 0; r < world; ++r) {
    const Shard sh = shard_of(count, world, r);
    counts[r] = static_cast<int>(sh.count);
    displs[r] = static_cast<int>(sh.offset);
  }
}

// Shards the caller chose (their sum <= INT_MAX, checked by the caller), the same way.
void shard_layout(std::span<const size_t> given, std::vector<int>& counts,
                  std::vector<int>& displs) {
  int offset = 0;
  for (size_t r = 0; r < given.size(); ++r) {
    counts[r] = static_cast<int>(given[r]);
    displs[r] = offset;
    offset += counts[r];
  }
}

// avg as the [Collective contract] defines it (the sum times 1/world_size, the reciprocal
// rounded once in T), and the rank-order sum below.
template <typename T>
void sum_in_rank_order(T* out, const T* parts, size_t count, int world, bool average) {
  std::memcpy(out, parts, count * sizeof(T));
  for (int r = 1; r < world; ++r) {
    const T* p = parts + static_cast<size_t>(r) * count;
    for (size_t i = 0; i < count; ++i)
      out[i] += p[i];
  }
  if (average) {
    const T scale = T(1) / static_cast<T>(world);
    for (size_t i = 0; i < count; ++i)
      out[i] *= scale;
  }
}

// [Rank-order sum] Floating sums (and averages) over the ranks are computed as
// ((x_0 + x_1) + x_2) + ... in rank order for every element, whatever the buffer's size, so
// the result of an element does not depend on how the buffer was split into calls: a gradient
// averaged in buckets equals the gradient averaged in one call bit for bit, and a
// reduce-scatter followed by an all-gather equals an all-reduce. MPI_Allreduce promises no such
// thing (Open MPI picks its algorithm, and so the association, by message size and rank count).
// Each rank owns shard_of(count) ([Shards]): every rank sends each owner its shard of its buffer
// (the bandwidth of a ring reduce-scatter: (N-1)/N of the buffer out and in), the owner sums
// the N copies in rank order, and for an all-reduce sends the result to every rank. Both stages
// are point-to-point messages ([In-flight order]). Buffers past the [MPI count limit] go
// through in chunks, each a reduce-scatter and all-gather of its own.
class RankOrderReduce final : public MpiStages {
 public:
  enum class Result { all_reduce, scatter };
  // all_reduce: send == buf, in place. scatter: out receives this rank's shard (out may be null
  // when that shard is empty, so the mode is said rather than read off the pointers). Tags
  // tag and tag + 1 are this request's. `shards`: the caller's [Shards] of a scatter (one
  // chunk); empty: shard_of of each chunk.
  RankOrderReduce(MPI_Comm comm, int rank, int world, int tag,
                  std::shared_ptr<detail::ScratchPool> pool, Result result, const void* send,
                  void* buf, void* out, size_t count, DType dtype, bool average, size_t max_chunk,
                  std::span<const size_t> shards = {})
      : comm_(comm),
        rank_(rank),
        world_(world),
        tag_(tag),
        pool_(std::move(pool)),
        result_(result),
        send_(static_cast<const char*>(send)),
        buf_(static_cast<char*>(buf)),
        out_(static_cast<char*>(out)),
        count_(count),
        dtype_(dtype),
        average_(average),
        max_chunk_(max_chunk),
        chunks_(detail::chunk_count(count, max_chunk)),
        counts_(world),
        displs_(world),
        given_(shards.begin(), shards.end()) {
    DPT_CHECK(given_.empty() || chunks_ <= 1, "chosen shards cover one chunk only");
    if (chunks_ > 0) start_scatter();
  }
  ~RankOrderReduce() override {
    if (scratch_.data) pool_->give(std::move(scratch_));
  }

 protected:
  bool next_stage() override {
    if (stage_ == Stage::scattering) {
      sum_chunk();
      if (result_ == Result::all_reduce) {
        start_gather();
        return true;
      }
    }
    if (++chunk_ >= chunks_) {
      pool_->give(std::move(scratch_));
      scratch_ = {};
      return false;
    }
    start_scatter();
    return true;
  }

 private:
  enum class Stage { scattering, gathering };

  size_t elem() const { return dtype_size(dtype_); }

  // The current chunk's shards, in elements relative to the chunk's start.
  void layout_chunk() {
    const detail::Chunk c = detail::chunk_at(count_, chunk_, max_chunk_);
    chunk_offset_ = c.offset;
    if (given_.empty()) {
      shard_layout(static_cast<size_t>(c.count), world_, counts_, displs_);
    } else {
      shard_layout(given_, counts_, displs_);
    }
  }

  // Every rank's copy of this rank's shard lands in scratch_, rank r's at r * mine.
  void start_scatter() {
    layout_chunk();
    const size_t mine = static_cast<size_t>(counts_[rank_]);
    const size_t need = static_cast<size_t>(world_) * mine * elem();
    if (scratch_.bytes < need) {
      if (scratch_.data) pool_->give(std::move(scratch_));
      scratch_ = pool_->take(need);
    }
    char* scratch = scratch_.data.get();
    const MPI_Datatype type = mpi_dtype(dtype_);
    const char* chunk = send_ + chunk_offset_ * elem();
    for (int r = 0; r < world_; ++r) {
      if (r == rank_) {
        // An empty shard has no scratch (null): memcpy must not see it, even for 0 bytes.
        if (mine > 0)
          std::memcpy(scratch + r * mine * elem(), chunk + displs_[r] * elem(), mine * elem());
        continue;
      }
      if (mine > 0)
        DPT_CHECK_MPI(MPI_Irecv(scratch + r * mine * elem(), static_cast<int>(mine), type, r, tag_,
                                comm_, &add()));
      if (counts_[r] > 0)
        DPT_CHECK_MPI(
            MPI_Isend(chunk + displs_[r] * elem(), counts_[r], type, r, tag_, comm_, &add()));
    }
    stage_ = Stage::scattering;
  }

  void sum_chunk() {
    const size_t mine = static_cast<size_t>(counts_[rank_]);
    if (mine == 0) return;
    char* dst =
        result_ == Result::scatter ? out_ : buf_ + (chunk_offset_ + displs_[rank_]) * elem();
    if (dtype_ == DType::f32)
      sum_in_rank_order(reinterpret_cast<float*>(dst),
                        reinterpret_cast<const float*>(scratch_.data.get()), mine, world_,
                        average_);
    else
      sum_in_rank_order(reinterpret_cast<double*>(dst),
                        reinterpret_cast<const double*>(scratch_.data.get()), mine, world_,
                        average_);
  }

  // This rank's summed shard to every rank; every other shard from its owner, in place.
  void start_gather() {
    const MPI_Datatype type = mpi_dtype(dtype_);
    char* chunk = buf_ + chunk_offset_ * elem();
    for (int r = 0; r < world_; ++r) {
      if (r == rank_) continue;
      if (counts_[r] > 0)
        DPT_CHECK_MPI(
            MPI_Irecv(chunk + displs_[r] * elem(), counts_[r], type, r, tag_ + 1, comm_, &add()));
      if (counts_[rank_] > 0)
        DPT_CHECK_MPI(MPI_Isend(chunk + displs_[rank_] * elem(), counts_[rank_], type, r, tag_ + 1,
                                comm_, &add()));
    }
    stage_ = Stage::gathering;
  }

  MPI_Comm comm_;
  int rank_, world_, tag_;
  std::shared_ptr<detail::ScratchPool> pool_;
  Result result_;
  const char* send_;
  char* buf_;
  char* out_;
  size_t count_;
  DType dtype_;
  bool average_;
  size_t max_chunk_, chunks_;
  size_t chunk_ = 0, chunk_offset_ = 0;
  Stage stage_ = Stage::scattering;
  std::vector<int> counts_, displs_;
  std::vector<size_t> given_;
  detail::ScratchPool::Block scratch_;  // the scatter stage's landing place ([Scratch reuse])
};

// MPI_Iallreduce of every chunk, all issued at once: integer types and max/min, whose results
// do not depend on the order of reduction.
class ChunkedAllReduce final : public MpiStages {
 public:
  ChunkedAllReduce(MPI_Comm comm, void* buf, size_t count, DType dtype, ReduceOp op,
                   size_t max_chunk) {
    const size_t chunks = detail::chunk_count(count, max_chunk);
    reqs_.reserve(chunks);
    for (size_t i = 0; i < chunks; ++i) {
      const detail::Chunk c = detail::chunk_at(count, i, max_chunk);
      DPT_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, element_at(buf, c.offset, dtype), c.count,
                                   mpi_dtype(dtype), mpi_op(op), comm, &add()));
    }
  }
};

class GatherShards final : public MpiStages {
 public:
  GatherShards(MPI_Comm comm, int rank, int world, const void* send, void* recv,
               std::span<const size_t> shards, DType dtype)
      : counts_(world), displs_(world) {
    shard_layout(shards, counts_, displs_);
    const MPI_Datatype type = mpi_dtype(dtype);
    const char* own = element_at(recv, static_cast<size_t>(displs_[rank]), dtype);
    DPT_CHECK_MPI(MPI_Iallgatherv(send == own ? MPI_IN_PLACE : send, counts_[rank], type, recv,
                                  counts_.data(), displs_.data(), type, comm, &add()));
  }

 private:
  std::vector<int> counts_, displs_;
};

bool is_float(DType d) {
  return d == DType::f32 || d == DType::f64;
}

// Checked before any traffic: every rank makes the same call and so fails the same way,
// instead of some ranks waiting in a collective that others never enter.
void check_reduction(const char* what, DType dtype, ReduceOp op) {
  DPT_CHECK(op != ReduceOp::avg || is_float(dtype),
            std::string(what) + " avg is defined for f32 and f64 only, got " + dtype_name(dtype) +
                "; use sum and divide where integer rounding is intended");
}

std::unique_ptr<PendingCollective> make_all_reduce(MPI_Comm comm, int rank, int world, int tag,
                                                   std::shared_ptr<detail::ScratchPool> pool,
                                                   void* buf, size_t count, DType dtype,
                                                   ReduceOp op, size_t max_chunk) {
  check_reduction("all_reduce", dtype, op);
  check_buffer(buf, count, "all_reduce");
  const bool ordered_sum = is_float(dtype) && (op == ReduceOp::sum || op == ReduceOp::avg);
  // One rank: the sum is the value itself and avg multiplies by exactly 1.
  if (ordered_sum && world == 1) return nullptr;
  if (ordered_sum)
    return std::make_unique<RankOrderReduce>(comm, rank, world, tag, std::move(pool),
                                             RankOrderReduce::Result::all_reduce, buf, buf, nullptr,
                                             count, dtype, op == ReduceOp::avg, max_chunk);
  return std::make_unique<ChunkedAllReduce>(comm, buf, count, dtype, op, max_chunk);
}

}  // namespace

namespace detail {

ScratchPool::Block ScratchPool::take(size_t bytes) {
  size_t best = free_.size(), largest = free_.size();
  for (size_t i = 0; i < free_.size(); ++i) {
    if (free_[i].bytes >= bytes && (best == free_.size() || free_[i].bytes < free_[best].bytes))
      best = i;
    if (largest == free_.size() || free_[i].bytes > free_[largest].bytes) largest = i;
  }
  if (best == free_.size() && largest != free_.size()) best = largest;  // to be replaced
  Block b;
  if (best != free_.size()) {
    b = std::move(free_[best]);
    free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
  }
  if (b.bytes < bytes) b = Block{std::make_unique<char[]>(bytes), bytes};
  return b;
}

void ScratchPool::give(Block block) {
  if (block.data) free_.push_back(std::move(block));
}

void mpi_all_reduce_chunked(MPI_Comm comm, int world_size, void* buf, size_t count, DType dtype,
                            ReduceOp op, size_t max_chunk_elements) {
  int rank = 0;
  DPT_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  // Tags 0 and 1: a blocking call has no other request of its own in flight.
  Request(make_all_reduce(comm, rank, world_size, 0, std::make_shared<ScratchPool>(), buf, count,
                          dtype, op, max_chunk_elements))
      .wait();
}

}  // namespace detail

MpiCommunicator::MpiCommunicator(MPI_Comm base) {
  DPT_CHECK(base != MPI_COMM_NULL, "MpiCommunicator needs a communicator, got MPI_COMM_NULL");
  DPT_CHECK_MPI(MPI_Comm_dup(base, &comm_));
  try {
    // The duplicate inherits base's handler, which for MPI_COMM_SELF aborts on any error.
    DPT_CHECK_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    DPT_CHECK_MPI(MPI_Comm_rank(comm_, &rank_));
    DPT_CHECK_MPI(MPI_Comm_size(comm_, &size_));
    // MPI_TAG_UB is at least 32767 (MPI 4.0, section 9.1.2).
    int* tag_ub = nullptr;
    int has = 0;
    DPT_CHECK_MPI(MPI_Comm_get_attr(comm_, MPI_TAG_UB, &tag_ub, &has));
    tag_pairs_ = static_cast<uint64_t>(has && tag_ub != nullptr ? *tag_ub : 32767) / 2;
  } catch (...) {
    MPI_Comm_free(&comm_);  // the destructor does not run for a throwing constructor
    throw;
  }
}

MpiCommunicator::~MpiCommunicator() {
  if (comm_ == MPI_COMM_NULL) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) {
    std::fprintf(stderr,
                 "dpt warning: MpiCommunicator destroyed after MPI_Finalize; its communicator "
                 "was not freed (destroy communicators before the MpiSession ends)\n");
    return;
  }
  const int rc = MPI_Comm_free(&comm_);
  if (rc != MPI_SUCCESS) {
    std::fprintf(stderr, "dpt warning: MPI_Comm_free failed in ~MpiCommunicator: %s\n",
                 mpi_error_string(rc).c_str());
  }
}

void MpiCommunicator::all_reduce(void* buf, size_t count, DType dtype, ReduceOp op) {
  iall_reduce(buf, count, dtype, op).wait();
}

int MpiCommunicator::next_tag() {
  // Two tags per request, advancing in issue order ([In-flight order]); the pairs wrap long
  // after any request that used them has completed.
  const int tag = static_cast<int>(2 * (issued_ % tag_pairs_));
  ++issued_;
  return tag;
}

void MpiCommunicator::broadcast(void* buf, size_t count, DType dtype, int root) {
  check_buffer(buf, count, "broadcast");
  if (rank_ == root && size_ > 1) count_sent(count * dtype_size(dtype));
  // The root is left for MPI to check (MPI_ERR_ROOT), so a bad root reads as the failed call.
  const MPI_Datatype type = mpi_dtype(dtype);
  const size_t chunks = detail::chunk_count(count);
  for (size_t i = 0; i < chunks; ++i) {
    const detail::Chunk c = detail::chunk_at(count, i);
    char* part = element_at(buf, c.offset, dtype);
    DPT_CHECK_MPI(MPI_Bcast(part, c.count, type, root, comm_));
  }
}

void MpiCommunicator::all_gather(const void* send, void* recv, size_t count, DType dtype) {
  // Chunks would land strided in recv (one block per rank each), which needs a strided
  // datatype; nothing gathers 2^31 elements per rank, so the limit is reported instead.
  DPT_CHECK(count <= static_cast<size_t>(INT_MAX),
            "all_gather of " + std::to_string(count) + " " + dtype_name(dtype) +
                " elements per rank exceeds MPI's int count limit (INT_MAX = " +
                std::to_string(INT_MAX) + "); gather fewer elements per call");
  check_buffer(send, count, "all_gather (send)");
  check_buffer(recv, count, "all_gather (recv)");
  const MPI_Datatype type = mpi_dtype(dtype);
  const int n = static_cast<int>(count);
  count_sent(count * dtype_size(dtype) * static_cast<uint64_t>(size_ - 1));
  DPT_CHECK_MPI(MPI_Allgather(send, n, type, recv, n, type, comm_));
}

Request MpiCommunicator::iall_reduce(void* buf, size_t count, DType dtype, ReduceOp op) {
  // [Bytes sent]: the rank-order sum sends every other rank its shard, then its own sum to
  // each; a ring's share where MPI reduces (the same figure when the shards are equal).
  const uint64_t bytes = count * dtype_size(dtype);
  if (is_float(dtype) && (op == ReduceOp::sum || op == ReduceOp::avg) && size_ > 1) {
    const uint64_t mine = shard_of(count, size_, rank_).count * dtype_size(dtype);
    count_sent(bytes - mine + mine * static_cast<uint64_t>(size_ - 1));
  } else {
    count_sent(ring_all_reduce_bytes(bytes, size_));
  }
  return Request(make_all_reduce(comm_, rank_, size_, next_tag(), scratch_, buf, count, dtype, op,
                                 detail::kMaxChunkElements));
}

// The total of the caller's [Shards], checked: one entry per rank, and a total MPI's int
// displacements can address (the whole buffer is addressed at once).
static size_t checked_shards(const char* what, std::span<const size_t> counts, int world,
                             DType dtype) {
  DPT_CHECK(counts.size() == static_cast<size_t>(world),
            std::string(what) + " got " + std::to_string(counts.size()) +
                " shard counts for a world of " + std::to_string(world));
  size_t total = 0;
  for (size_t c : counts) {
    DPT_CHECK(c <= static_cast<size_t>(INT_MAX) - total,
              std::string(what) +
                  " shards sum past MPI's int count limit (INT_MAX = " + std::to_string(INT_MAX) +
                  ") of " + dtype_name(dtype) + " elements; split the buffer into several calls");
    total += c;
  }
  return total;
}

Request MpiCommunicator::ireduce_scatter_v(const void* send, void* recv,
                                           std::span<const size_t> counts, DType dtype,
                                           ReduceOp op) {
  DPT_CHECK(is_float(dtype) && (op == ReduceOp::sum || op == ReduceOp::avg),
            std::string("reduce_scatter supports sum and avg of f32 and f64, got ") +
                reduce_op_name(op) + " of " + dtype_name(dtype));
  const size_t count = checked_shards("reduce_scatter", counts, size_, dtype);
  const size_t mine = counts[static_cast<size_t>(rank_)];
  check_buffer(send, count, "reduce_scatter (send)");
  check_buffer(recv, mine, "reduce_scatter (recv)");
  if (size_ == 1) {
    if (recv != send) std::memmove(recv, send, count * dtype_size(dtype));
    return Request();
  }
  // One chunk: this rank's shard of the whole buffer is not the union of its shards of chunks.
  // count <= INT_MAX (checked above), so one chunk fits MPI's counts.
  const size_t one_chunk = count > 0 ? count : 1;
  count_sent((count - mine) * dtype_size(dtype));  // [Bytes sent]: every other owner its part
  return Request(std::make_unique<RankOrderReduce>(
      comm_, rank_, size_, next_tag(), scratch_, RankOrderReduce::Result::scatter, send, nullptr,
      recv, count, dtype, op == ReduceOp::avg, one_chunk, counts));
}

Request MpiCommunicator::iall_gather_v(const void* send, void* recv, std::span<const size_t> counts,
                                       DType dtype) {
  const size_t count = checked_shards("all_gather", counts, size_, dtype);
  check_buffer(send, counts[static_cast<size_t>(rank_)], "all_gather (send)");
  check_buffer(recv, count, "all_gather (recv)");
  if (size_ == 1) {
    if (recv != send) std::memmove(recv, send, count * dtype_size(dtype));
    return Request();
  }
  count_sent(counts[static_cast<size_t>(rank_)] * dtype_size(dtype) *
             static_cast<uint64_t>(size_ - 1));  // [Bytes sent]
  return Request(std::make_unique<GatherShards>(comm_, rank_, size_, send, recv, counts, dtype));
}

void MpiCommunicator::barrier() {
  DPT_CHECK_MPI(MPI_Barrier(comm_));
}

}  // namespace dpt::comm
