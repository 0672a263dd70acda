// MPI bootstrap: initializes MPI once per process and says where this process stands
// (world rank and size, local rank and size on its node, host name).
#pragma once

#include <mpi.h>

#include <string>

#include "common/errors.h"

#define DPT_CHECK_MPI(call) \
  DPT_CHECK_GEN("MPI", call, _dpt_rc == MPI_SUCCESS, ::dpt::comm::mpi_error_string(_dpt_rc))

namespace dpt::comm {

std::string mpi_error_string(int code);

struct Placement {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;  // rank among the processes sharing this node (MPI_COMM_TYPE_SHARED)
  int local_size = 1;
  std::string host;
};

// Owner of MPI's lifetime (neither copied nor moved). Construct once at the top of main();
// finalize() or the destructor ends MPI. abort() tears the whole job down (every rank), for
// failures that would leave other ranks waiting in a collective.
//
// [Session sharing]
// - MPI can be initialized and finalized once per process, so sessions share it: the first
//   session initializes MPI (MPI_THREAD_FUNNELED), later ones find it initialized and join.
//   MPI is finalized when the last live session that shares it finalizes or is destroyed.
// - If something else initialized MPI before any session, sessions never finalize it; its
//   owner does. A session cannot be constructed once MPI has been finalized.
// - Every MPI call, finalize included, belongs to the thread that constructed the first
//   session (MPI_THREAD_FUNNELED).
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();  // finalizes if finalize()/abort() were not called; never throws
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  const Placement& placement() const { return placement_; }
  int rank() const { return placement_.rank; }
  int world_size() const { return placement_.world_size; }

  void finalize();
  [[noreturn]] void abort(int exit_code);

 private:
  Placement placement_;
  bool finalized_ = false;
};

}  // namespace dpt::comm
