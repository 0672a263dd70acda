// The MPI backend of the communicator: host buffers, blocking collectives on a private duplicate
// of the caller's communicator, every call checked through DPT_CHECK_MPI.
#include "comm/mpi_communicator.h"

#include <climits>
#include <cstdio>
#include <string>

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
      return MPI_SUM;  // then scaled, see scale_in_place
    case ReduceOp::max:
      return MPI_MAX;
    case ReduceOp::min:
      return MPI_MIN;
  }
  fail_check("check", "mpi_op(op)", "unknown ReduceOp " + std::to_string(static_cast<int>(op)),
             __func__, __FILE__, __LINE__);
}

// avg as the [Collective contract] defines it: the sum times 1/world_size, the reciprocal
// rounded once in T, so a caller (or a test) can compute the exact result bits itself.
template <typename T>
void scale_in_place(void* buf, size_t count, int world_size) {
  const T scale = T(1) / static_cast<T>(world_size);
  T* values = static_cast<T*>(buf);
  for (size_t i = 0; i < count; ++i) {
    values[i] *= scale;
  }
}

// Element offsets become byte offsets here and nowhere else.
char* element_at(void* buf, size_t offset, DType dtype) {
  return static_cast<char*>(buf) + offset * dtype_size(dtype);
}

void check_buffer(const void* buf, size_t count, const char* what) {
  DPT_CHECK(buf != nullptr || count == 0,
            std::string(what) + " got a null buffer for " + std::to_string(count) + " elements");
}

}  // namespace

namespace detail {

void mpi_all_reduce_chunked(MPI_Comm comm, int world_size, void* buf, size_t count, DType dtype,
                            ReduceOp op, size_t max_chunk_elements) {
  // Checked before any traffic: every rank makes the same call and so fails the same way,
  // instead of some ranks waiting in a collective that others never enter.
  DPT_CHECK(op != ReduceOp::avg || dtype == DType::f32 || dtype == DType::f64,
            std::string("all_reduce avg is defined for f32 and f64 only, got ") +
                dtype_name(dtype) + "; use sum and divide where integer rounding is intended");
  check_buffer(buf, count, "all_reduce");
  const MPI_Datatype type = mpi_dtype(dtype);
  const MPI_Op mop = mpi_op(op);
  const size_t chunks = chunk_count(count, max_chunk_elements);
  for (size_t i = 0; i < chunks; ++i) {
    const Chunk c = chunk_at(count, i, max_chunk_elements);
    char* part = element_at(buf, c.offset, dtype);
    DPT_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, part, c.count, type, mop, comm));
  }
  if (op == ReduceOp::avg) {
    if (dtype == DType::f32) scale_in_place<float>(buf, count, world_size);
    if (dtype == DType::f64) scale_in_place<double>(buf, count, world_size);
  }
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
  detail::mpi_all_reduce_chunked(comm_, size_, buf, count, dtype, op, detail::kMaxChunkElements);
}

void MpiCommunicator::broadcast(void* buf, size_t count, DType dtype, int root) {
  check_buffer(buf, count, "broadcast");
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
  DPT_CHECK_MPI(MPI_Allgather(send, n, type, recv, n, type, comm_));
}

void MpiCommunicator::barrier() {
  DPT_CHECK_MPI(MPI_Barrier(comm_));
}

}  // namespace dpt::comm
